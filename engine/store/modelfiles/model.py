"""What torchdeck knows of any model file, whatever wrote it: its tensors, facts and parts.

Every reader (torch.save files, TorchScript, safetensors, ONNX) fills in the same ModelFile, so
the tree, the statistics, ``diff``, ``--weights`` and the TUI's browser work on all of them
alike. A tensor is described by its header (name, shape, dtype, bytes) and read only when asked
for (``TensorEntry.read``): listing a large file never reads its values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch


def dtype_name(dtype: torch.dtype | str) -> str:
    """``torch.float32`` → ``float32``: the name a person reads and JSON keeps."""
    return str(dtype).removeprefix("torch.")


def element_size(dtype: str) -> int:
    """Bytes per element of the dtype named as ``dtype_name`` writes it; 0 for a name torch has no dtype of."""
    found = getattr(torch, dtype, None) if dtype.isidentifier() else None
    return found.itemsize if isinstance(found, torch.dtype) else 0


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a file as its header tells it; ``read`` gives its values (a CPU tensor,
    possibly memory-mapped), or is None where they cannot be had without running the file."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    read: Callable[[], torch.Tensor] | None = field(default=None, compare=False, repr=False)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * element_size(self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "parameters": self.numel, "bytes": self.nbytes}


def entry(name: str, tensor: torch.Tensor) -> TensorEntry:
    """The entry of a tensor already at hand (a memory-mapped one reads nothing until used)."""
    return TensorEntry(name, tuple(tensor.shape), dtype_name(tensor.dtype), lambda: tensor)


@dataclass
class ModelFile:
    """A model file, opened without running anything it holds.

    ``format``: what wrote it (see FORMATS). ``tensors``: the model's weights by dotted name, the
    state dict ``--weights`` would load; ``weights_at`` says where in the file they were found
    ("state_dict", "model_state"; "" at the top). ``more``: the other state dicts the file holds,
    by where they are. ``facts``: the file's plain values (epoch, loss, hyper-parameters), by
    dotted key. ``optimizers`` and ``schedulers``: summaries of their states. ``inputs`` and
    ``outputs``: a graph's signature (TorchScript, ONNX), each {name, shape, dtype}.
    ``modules``: the model's layers and their classes, by dotted path, where the file names them
    (a pickled model, TorchScript). ``globals``: the Python objects a pickle would build or call,
    which is why it was not loaded.
    ``notes``: what a person should know (why something is not shown, how to re-save a file).
    """

    path: Path
    format: str
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    weights_at: str = ""
    more: dict[str, dict[str, TensorEntry]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    optimizers: list[dict[str, Any]] = field(default_factory=list)
    schedulers: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    modules: dict[str, str] = field(default_factory=dict)
    globals: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> int:
        return sum(t.numel for t in self.tensors.values())

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def to_dict(self) -> dict[str, Any]:
        """Everything but the values, as JSON takes it."""
        return {
            "path": str(self.path), "format": self.format, "description": FORMATS[self.format],
            "weights_at": self.weights_at, "parameters": self.parameters, "bytes": self.nbytes,
            "tensors": [t.to_dict() for t in self.tensors.values()],
            "more": {where: [t.to_dict() for t in found.values()] for where, found in self.more.items()},
            "facts": self.facts, "optimizers": self.optimizers, "schedulers": self.schedulers,
            "inputs": self.inputs, "outputs": self.outputs, "modules": self.modules, "globals": self.globals, "notes": self.notes,
        }


FORMATS = {
    "torchdeck": "a torchdeck checkpoint",
    "state-dict": "a state dict (torch.save(model.state_dict()))",
    "checkpoint": "a training checkpoint: a dict holding state dicts and values",
    "lightning": "a PyTorch Lightning checkpoint",
    "pickle": "a pickled Python object (a whole model); not loaded: loading it runs code",
    "tensors": "a torch.save file of tensors and values",
    "safetensors": "a safetensors file",
    "safetensors-sharded": "a sharded safetensors model (an index and its shards)",
    "torchscript": "a TorchScript archive",
    "onnx": "an ONNX model",
}
