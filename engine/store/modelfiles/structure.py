"""Finding the parts of a loaded checkpoint: its state dicts, optimizer and scheduler states,
a pickled model's modules, and its plain values, at any depth.

Training scripts nest their checkpoints freely ({"epoch": e, "model_state": ..., "optimizer_state":
...}, Lightning's state_dict / optimizer_states / lr_schedulers / callbacks, a GAN's two models),
so the walk recognises each part by its shape, not by the keys a particular tool uses. It works
alike on real tensors (a weights_only load) and on a shadow read's TensorRefs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.store.modelfiles.shadow import Shadow, TensorRef
from engine.store.modelfiles.summary import number, optimizer_summary, scheduler_summary

# Keys under which scripts keep the model's own state dict, best first.
MODEL_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "net", "network", "module", "weights",
              "params", "ema")
MAX_FACTS = 400
MAX_DEPTH = 32
_SCALARS = (bool, int, float, str, type(None))


@dataclass
class Found:
    """What the walk found: state dicts (name → tensor) by where they are, and the rest."""

    state_dicts: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)  # a pickled model's layers: path → class
    facts: dict[str, Any] = field(default_factory=dict)
    optimizers: list[dict[str, Any]] = field(default_factory=list)
    schedulers: list[dict[str, Any]] = field(default_factory=list)
    dropped_facts: int = 0


def is_tensor(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, TensorRef))


def join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def walk(obj: Any) -> Found:
    found = Found()
    _walk(obj, "", found, set(), 0)
    return found


def _walk(obj: Any, where: str, found: Found, seen: set[int], depth: int) -> None:
    if depth > MAX_DEPTH or id(obj) in seen:  # a pickle can nest without end or refer to itself
        return
    if isinstance(obj, _SCALARS):
        _fact(found, where or "value", obj)
        return
    seen.add(id(obj))
    if isinstance(obj, Shadow):
        _shadow(obj, where, found, seen, depth)
    elif isinstance(obj, dict):
        _mapping(obj, where, found, seen, depth)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
        if all(isinstance(v, _SCALARS) for v in items):
            _fact(found, where, items if len(items) <= 16 else f"{len(items)} values")
        else:
            for index, item in enumerate(items):
                _walk(item, join(where, index), found, seen, depth + 1)
    elif is_tensor(obj):
        found.state_dicts.setdefault(_parent(where), {})[where.rpartition(".")[2] or "tensor"] = obj
    else:
        _fact(found, where, printable_type(obj))


def _mapping(obj: dict, where: str, found: Found, seen: set[int], depth: int) -> None:
    if {"state", "param_groups"} <= obj.keys():
        found.optimizers.append(optimizer_summary(where, obj))
        return
    if "last_epoch" in obj and ("base_lrs" in obj or "_step_count" in obj):
        found.schedulers.append(scheduler_summary(where, obj))
        return
    tensors = {str(k): v for k, v in obj.items() if is_tensor(v)}
    if len(tensors) < len(obj):  # among other values, a one-number tensor is a value (a loss, a best score)
        for key, value in list(tensors.items()):
            if number(value) is not None and value.dim() == 0:
                _fact(found, join(where, key), number(value))
                del tensors[key]
    if tensors:
        found.state_dicts[where] = tensors
    for key, value in obj.items():
        if not is_tensor(value):
            _walk(value, join(where, key), found, seen, depth + 1)


def _shadow(obj: Shadow, where: str, found: Found, seen: set[int], depth: int) -> None:
    """A pickled nn.Module (its _parameters, _buffers and _modules), a TorchScript module (its
    attributes), or another object, whose fields are walked like a dict's."""
    fields = obj.fields
    if "_parameters" in fields or "_modules" in fields or obj.module.startswith("__torch__"):
        tensors: dict[str, Any] = {}
        _module(obj, "", tensors, found.modules, set(), 0)
        found.state_dicts[where] = tensors
        return
    if obj._list:
        fields = {**fields, **dict(enumerate(obj._list))}
    _mapping(fields, where, found, seen, depth)


def _module(obj: Shadow, path: str, tensors: dict[str, Any], modules: dict[str, str], seen: set[int],
            depth: int) -> None:
    """A module's tensors under dotted names, as its state_dict would name them, and its layers' classes."""
    if depth > MAX_DEPTH or id(obj) in seen:
        return
    seen.add(id(obj))
    modules[path] = module_type(obj)
    fields = obj.fields
    own = {**_dict(fields.get("_parameters")), **_dict(fields.get("_buffers"))}
    own.update({k: v for k, v in fields.items() if is_tensor(v)})  # TorchScript keeps them as attributes
    for name, value in own.items():
        if is_tensor(value):
            tensors[join(path, name)] = value
    children = {**{k: v for k, v in fields.items() if isinstance(v, Shadow)}, **_dict(fields.get("_modules"))}
    for name, child in children.items():
        if isinstance(child, Shadow):
            _module(child, join(path, name), tensors, modules, seen, depth + 1)


def _dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Shadow):
        value = value.fields
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def module_type(obj: Shadow) -> str:
    """``__torch__.torch.nn.modules.linear.___torch_mangle_3.Linear`` → ``torch.nn.modules.linear.Linear``."""
    parts = [p for p in obj.module.split(".") if p != "__torch__" and not p.startswith("___torch_mangle")]
    return ".".join([*parts, obj.name])


def printable_type(obj: Any) -> str:
    return f"<{type(obj).__module__}.{type(obj).__qualname__}>"


def _parent(where: str) -> str:
    return where.rpartition(".")[0]


def _fact(found: Found, where: str, value: Any) -> None:
    if len(found.facts) >= MAX_FACTS:
        found.dropped_facts += 1
    else:
        found.facts[where] = value


def numel(tensor: Any) -> int:
    return tensor.numel() if isinstance(tensor, torch.Tensor) else math.prod(tensor.shape)


def model_key(state_dicts: dict[str, dict[str, Any]]) -> str | None:
    """Which state dict is the model's: the one at the top, else under the best-known key, else the largest."""
    if not state_dicts:
        return None
    if "" in state_dicts:
        return ""
    for key in MODEL_KEYS:
        for where in state_dicts:
            if where.rpartition(".")[2].lower() == key:
                return where
    return max(state_dicts, key=lambda where: sum(numel(t) for t in state_dicts[where].values()))
