"""Reading a pickle without running it: every global it names becomes an inert stand-in.

``torch.load(weights_only=True)`` refuses a file that names any class or function beyond plain
data (a whole pickled model, a TorchScript archive, hyper-parameters kept as a custom class).
Such a file still says a lot: which Python objects it would build (the reason it is not
loaded), and its tensors, whose headers sit in the pickle and whose values sit beside it in the
archive. Here the pickle is read with an Unpickler whose ``find_class`` never imports or
returns anything real: a global becomes a Shadow class, calling it records the call, and
torch's tensor-rebuilding functions become TensorRefs. No code from the file runs.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

# Storage classes as torch.save names them, and the dtype of their elements.
STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "QInt8Storage": "qint8", "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32", "UntypedStorage": "uint8",
}
# The functions torch.save uses to rebuild a tensor or a parameter from its storage.
_REBUILD_TENSOR = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"}
_REBUILD_PARAMETER = {"_rebuild_parameter", "_rebuild_parameter_with_state"}
REBUILDS = _REBUILD_TENSOR | _REBUILD_PARAMETER
# Plain containers a pickle may name, which building runs no code of the file's.
SAFE = {("collections", "OrderedDict"): OrderedDict, ("builtins", "set"): set, ("__builtin__", "set"): set,
         ("builtins", "frozenset"): frozenset, ("builtins", "dict"): dict, ("builtins", "list"): list,
         ("builtins", "tuple"): tuple}


@dataclass(frozen=True)
class StorageRef:
    """A storage the pickle points to: its record in the archive, element dtype and size."""

    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the pickle describes it, its values left in the archive."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class Shadow:
    """An object the pickle would have built by calling ``module.name``: what it was called
    with and the state it was given, nothing more. Subclassed once per global (see Reader)."""

    module = ""
    name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Shadow:
        self = object.__new__(cls)
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_state", None)
        object.__setattr__(self, "_items", {})
        object.__setattr__(self, "_list", [])
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_state", state)

    def __setitem__(self, key: Any, value: Any) -> None:  # a dict subclass's items (SETITEMS)
        self._items[key] = value

    def append(self, value: Any) -> None:  # a list subclass's items (APPENDS)
        self._list.append(value)

    def extend(self, values: Any) -> None:
        self._list.extend(values)

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def fields(self) -> dict[str, Any]:
        """What the object would hold: its state's mapping (an nn.Module's ``__dict__``), then its items."""
        state = self._state
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slot state)
        found = dict(state) if isinstance(state, dict) else {}
        return {**found, **self._items}

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class _Reader(pickle.Unpickler):
    """The Unpickler whose globals are Shadows: see the module's docstring."""

    def __init__(self, data: bytes, storage: Callable[[tuple], Any]) -> None:
        self.stream = io.BytesIO(data)
        super().__init__(self.stream)
        self.named: list[str] = []
        self._storage = storage
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if qualname not in self.named:
            self.named.append(qualname)
        if (module, name) in SAFE:
            return SAFE[module, name]
        if module == "torch._utils" and name in _REBUILD_TENSOR:
            return _tensor_ref
        if module == "torch._utils" and name in _REBUILD_PARAMETER:
            return lambda tensor, *rest: tensor
        if (module, name) not in self._classes:
            self._classes[module, name] = type(name, (Shadow,), {"module": module, "name": name})
        return self._classes[module, name]

    def persistent_load(self, pid: Any) -> Any:
        return self._storage(pid)


def _tensor_ref(storage: Any, offset: int, shape: Any, stride: Any = (), *rest: Any) -> Any:
    """What ``torch._utils._rebuild_tensor_v2`` would build, as a TensorRef; anything odd stays a Shadow."""
    if isinstance(storage, StorageRef) and isinstance(offset, int) and _ints(shape) and _ints(stride):
        return TensorRef(storage, offset, tuple(shape), tuple(stride))
    return Shadow(storage, offset, shape, stride, *rest)


def _ints(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(v, int) and v >= 0 for v in value)


def storage_ref(pid: Any) -> Any:
    """torch.save's persistent id, ('storage', StorageClass, key, location, numel), as a StorageRef."""
    if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
        kind, key, numel = pid[1], pid[2], pid[4]
        dtype = STORAGE_DTYPES.get(getattr(kind, "name", ""), "") if isinstance(kind, type) else ""
        if dtype and isinstance(key, str) and isinstance(numel, int):
            return StorageRef(key, dtype, numel)
    return Shadow(pid)


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # what torch.save's legacy format pickles first


def read(data: bytes) -> tuple[Any, list[str]]:
    """The object a pickle describes, with Shadows for what it names, and every global it names.
    torch.save's legacy format is several pickles in a row (magic number, protocol, system
    information, then the object); its object is the one given."""
    reader = _Reader(data, storage_ref)
    found = []
    try:
        while reader.stream.tell() < len(data) and len(found) < 4:
            found.append(reader.load())
    except Exception:  # noqa: BLE001 - a damaged pickle (or the legacy format's raw data) ends the reading
        pass
    if len(found) == 4 and found[0] == LEGACY_MAGIC:
        return found[3], reader.named
    return (found[0] if found else None), reader.named
