"""The tensors of a model file as a tree of dotted module paths, with totals per subtree.

``fc1.weight`` and ``fc1.bias`` sit under the node ``fc1``; a node's parameters and bytes are
its subtree's. ``depth`` folds what lies deeper into the node at that depth; ``pattern`` keeps
the tensors whose full name matches it (a glob such as ``*.bias``, or else a plain substring).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.store.modelfiles import TensorEntry


@dataclass
class Node:
    """A module path (``layer1.0``) or, at a leaf, one tensor; totals cover the whole subtree."""

    name: str  # the last part of the path
    path: str  # the whole dotted path ("" at the root)
    tensor: TensorEntry | None = None
    children: dict[str, Node] = field(default_factory=dict)
    tensors: int = 0
    parameters: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "path": self.path, "tensors": self.tensors,
                                "parameters": self.parameters, "bytes": self.bytes}
        if self.tensor is not None:
            data.update(shape=list(self.tensor.shape), dtype=self.tensor.dtype)
        if self.children:
            data["children"] = [child.to_dict() for child in self.children.values()]
        return data


def matches(name: str, pattern: str | None) -> bool:
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return pattern in name


def build(tensors: Iterable[TensorEntry], depth: int | None = None, pattern: str | None = None) -> Node:
    """The tree of ``tensors`` (in their file's order), folded below ``depth`` and filtered by ``pattern``."""
    root = Node("", "")
    for tensor in tensors:
        if not matches(tensor.name, pattern):
            continue
        parts = tensor.name.split(".")
        node = root
        for index, part in enumerate(parts):
            node.tensors += 1
            node.parameters += tensor.numel
            node.bytes += tensor.nbytes
            if depth is not None and index >= depth:
                break
            path = ".".join(parts[: index + 1])
            node = node.children.setdefault(part, Node(part, path))
        else:
            node.tensors += 1
            node.parameters += tensor.numel
            node.bytes += tensor.nbytes
            node.tensor = tensor
    return root


def rows(node: Node, level: int = 0) -> Iterable[tuple[int, Node]]:
    """Each node below ``node`` with its level, parents before children: the lines of a printed tree.
    A chain of single children (``encoder.layer`` with one child) stays one line per part."""
    for child in node.children.values():
        yield level, child
        yield from rows(child, level + 1)
