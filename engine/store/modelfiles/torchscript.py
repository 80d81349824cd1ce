"""TorchScript archives (``torch.jit.save``), read without loading them.

``torch.jit.load`` would compile the archive's code and run a module's ``__setstate__``; here
the archive is read as data: its module tree and tensors from ``data.pkl`` (a shadow read, see
engine.store.modelfiles.shadow), and the ``forward`` signature from the code it keeps as text.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from engine.errors import CheckpointError
from engine.store.modelfiles import shadow
from engine.store.modelfiles.model import ModelFile
from engine.store.modelfiles.structure import walk
from engine.store.modelfiles.torchsave import Archive

_ITS_OWN = ("__torch__.", "torch.", "collections.OrderedDict", "builtins.set")  # what data.pkl names
_FORWARD = re.compile(r"def forward\(\s*self[^,)]*,?(?P<args>.*?)\)\s*->\s*(?P<returns>[^:]+):", re.S)


def is_torchscript(path: Path) -> bool:
    """Whether the zip archive holds TorchScript code (torch.save's archives hold none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.count("/") >= 2 and name.split("/")[1] == "code" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def read(path: Path) -> ModelFile:
    archive = Archive(path)
    data, named = shadow.read(archive.record("data.pkl"))
    if not isinstance(data, shadow.Shadow):
        raise CheckpointError(f"{path} is a damaged TorchScript archive: its data.pkl holds no module")
    found = walk(data)
    model = ModelFile(path, "torchscript", tensors={name: archive.entry(name, ref)
                                                    for name, ref in found.state_dicts.get("", {}).items()})
    model.modules = found.modules
    model.inputs, model.outputs = _signature(archive, data)
    model.notes.append("read as data: its code was neither compiled nor run")
    model.globals = [name for name in named if not name.startswith(_ITS_OWN)]
    if model.globals:
        model.notes.insert(0, f"its data.pkl names Python objects no TorchScript archive needs "
                              f"({', '.join(model.globals[:8])}): it was made to run code, and none of it ran")
    return model


def _signature(archive: Archive, root: shadow.Shadow) -> tuple[list[dict], list[dict]]:
    """forward's parameters and return type, from the root class's code (text in the archive)."""
    source = "code/" + "/".join(root.module.split(".")) + ".py"
    if f"{archive.prefix}/{source}" not in archive.names:
        return [], []
    text = archive.record(source).decode("utf-8", "replace")
    start = text.find(f"class {root.name}(")
    match = _FORWARD.search(text, max(start, 0))
    if match is None:
        return [], []
    inputs = []
    for part in filter(None, (p.strip() for p in _split(match["args"]))):
        name, _, kind = part.partition(":")
        inputs.append({"name": name.strip(), "type": kind.split("=")[0].strip() or "?"})
    return inputs, [{"name": "output", "type": " ".join(match["returns"].split())}]


def _split(args: str) -> list[str]:
    """Parameters split at the commas outside brackets (``Tuple[Tensor, Tensor]`` is one)."""
    parts, depth, current = [], 0, ""
    for char in args:
        depth += char in "[(" and 1 or 0
        depth -= char in "])" and 1 or 0
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]
