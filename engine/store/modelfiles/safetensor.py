"""safetensors files, one or sharded (``model.safetensors.index.json`` and its shards).

The format is a JSON header (names, dtypes, shapes, byte offsets) before the raw bytes, so
everything but the values comes from the header alone and each tensor is read only when asked
for, one at a time. The ``safetensors`` package checks the header (offsets inside the file, no
overlaps) before anything is read; whatever it refuses in a crafted file is one line here. The
index of a sharded model is someone else's file too: only plain file names beside it are
opened, never a path out of its folder or a link.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterator

import torch

from engine.errors import CheckpointError
from engine.store.modelfiles.model import ModelFile, TensorEntry
from engine.text import first_line, printable

MAX_HEADER = 100_000_000  # the package's own limit on a header's size
MAX_INDEX = 16 << 20  # an index lists names: anything bigger is something else

# safetensors' dtype names → torch's (as engine.store.modelfiles.model.dtype_name writes them)
_DTYPES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16", "F16": "float16",
           "BF16": "bfloat16", "U32": "uint32", "I32": "int32", "F32": "float32", "U64": "uint64", "I64": "int64",
           "F64": "float64", "C64": "complex64", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
           "F8_E8M0": "float8_e8m0fnu"}


def looks_like(head: bytes) -> bool:
    """Whether a file's first 9 bytes start a safetensors file: a little-endian u64 header length
    of a sane size, then the header's opening ``{``."""
    return len(head) >= 9 and 2 <= int.from_bytes(head[:8], "little") <= MAX_HEADER and head[8:9] == b"{"


def read(path: str | Path) -> ModelFile:
    """One safetensors file: its tensors (values read lazily) and its ``__metadata__`` as facts."""
    path = Path(path)
    tensors, metadata = _header(path)
    return ModelFile(path, "safetensors", tensors=tensors, facts=_facts(metadata))


def read_sharded(index_path: str | Path) -> ModelFile:
    """A sharded model: the tensors the index's ``weight_map`` names, from the shards beside it
    (each shard's header read once); the index's and the shards' metadata as facts."""
    index_path = Path(index_path)
    index = _read_index(index_path)
    by_shard: dict[str, list[str]] = {}
    for name, shard in index["weight_map"].items():
        by_shard.setdefault(shard, []).append(name)
    tensors: dict[str, TensorEntry] = {}
    metadata = dict(index.get("metadata") or {})
    notes = []
    for shard, names in by_shard.items():
        found, shard_metadata = _header(_shard_path(index_path, shard))
        lacking = [name for name in names if name not in found]
        if lacking:
            raise CheckpointError(f"{index_path}: the shard {printable(shard)} lacks {len(lacking)} tensor(s) "
                                  f"the index puts there ({printable(', '.join(lacking[:5]))})")
        if len(found) > len(names):
            notes.append(f"the shard {shard} holds {len(found) - len(names)} tensor(s) the index does not list; "
                         f"they are left out")
        tensors.update((name, found[name]) for name in names)
        metadata = {**shard_metadata, **metadata}
    return ModelFile(index_path, "safetensors-sharded", tensors=dict(sorted(tensors.items())),
                     facts={**_facts(metadata), "shards": len(by_shard)}, notes=notes)


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Any]:
    """The file opened by the package; anything it refuses is one CheckpointError."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            yield handle
    except CheckpointError:
        raise
    except Exception as exc:  # the package's own errors (SafetensorError) and the system's alike
        raise CheckpointError(f"{path} is a damaged safetensors file ({first_line(exc)})") from None


def _header(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The entries of ``path``'s tensors, by name, and its header's ``__metadata__``."""
    with _opened(path) as handle:
        metadata = handle.metadata() or {}
        tensors = {}
        for name in sorted(handle.keys()):
            view = handle.get_slice(name)
            dtype = view.get_dtype()
            tensors[name] = TensorEntry(name, tuple(view.get_shape()), _DTYPES.get(dtype, dtype.lower()),
                                        lambda name=name: _tensor(path, name))
    return tensors, metadata


def _tensor(path: Path, name: str) -> torch.Tensor:
    with _opened(path) as handle:
        return handle.get_tensor(name)


def _facts(metadata: dict[str, Any]) -> dict[str, Any]:
    """Metadata as facts under ``metadata.``: plain values kept, anything else as its JSON text."""
    return {f"metadata.{key}": value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
            for key, value in metadata.items()}


def _read_index(path: Path) -> dict[str, Any]:
    """The index's JSON object, read only from a regular file of an index's size (never a FIFO
    that would block, a device that never ends or gigabytes), with a ``weight_map`` of names."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CheckpointError(f"{path} is not a regular file; a safetensors index is one")
            data = handle.read(MAX_INDEX + 1)
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_INDEX:
        raise CheckpointError(f"{path} is over {MAX_INDEX >> 20} MiB, too large for a safetensors index")
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a safetensors index: not JSON ({first_line(exc)})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in weight_map.items()):
        raise CheckpointError(f"{path} is not a safetensors index: it has no weight_map of tensor names to shards")
    if not isinstance(index.get("metadata") or {}, dict):
        raise CheckpointError(f"{path} is not a safetensors index: its metadata is not an object")
    return index


def _shard_path(index_path: Path, shard: str) -> Path:
    """The shard's file beside the index: a plain file name, a regular file, not a link."""
    if not shard or shard in (".", "..") or {"/", "\\", "\0"} & set(shard) or os.path.isabs(shard):
        raise CheckpointError(f"{index_path} names the shard '{printable(shard)}'; only a file name in the "
                              f"index's folder is opened")
    path = index_path.parent / shard
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise CheckpointError(f"{index_path}: the shard {printable(shard)} cannot be read: "
                              f"{exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise CheckpointError(f"{index_path}: the shard {printable(shard)} is {kind}; only a regular file "
                              f"beside the index is opened")
    return path
