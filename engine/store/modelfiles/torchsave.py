"""Files written by ``torch.save``: state dicts, training checkpoints, Lightning ``.ckpt`` files,
torchdeck checkpoints, and whole pickled models.

Each is read with ``torch.load(weights_only=True, mmap=True)``: memory-mapped, so listing the
tensors of a large file reads their headers and leaves their values on disk until asked for. A
file that weights_only refuses (it would build Python objects: a whole model, a custom class)
is read again as a shadow (engine.store.modelfiles.shadow): what it would import is listed, and
its tensors are shown from the archive without running anything.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError
from engine.store.checkpoint import MAGIC, is_pickle
from engine.store.modelfiles import shadow
from engine.store.modelfiles.model import ModelFile, TensorEntry, element_size, entry
from engine.store.modelfiles.structure import Found, model_key, walk
from engine.text import first_line

MAX_PICKLE = 1 << 28  # a data.pkl of 256 MiB describes millions of tensors; a larger one is a zip bomb
RESAVE = ("to make it readable, its owner can load it where its classes are defined and save the weights: "
          "torch.save(model.state_dict(), 'weights.pt')")


def read(path: Path) -> ModelFile:
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: the result says enough
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError:
        return _refused(path)
    except PermissionError:
        raise CheckpointError(f"{path} cannot be read: permission denied") from None
    except Exception as exc:  # torch's reader fails in many ways on a file that is not its own
        raise CheckpointError(f"{path} is damaged or not a PyTorch file ({first_line(exc)})") from None
    return _described(path, data, walk(data), entry)


def _format(data: Any, found: Found) -> str:
    if isinstance(data, dict) and data.get("magic") == MAGIC:
        return "torchdeck"
    if isinstance(data, dict) and ("pytorch-lightning_version" in data or
                                   "state_dict" in data and {"optimizer_states", "hyper_parameters"} & data.keys()):
        return "lightning"
    if isinstance(data, dict) and data and set(found.state_dicts) == {""} and not found.facts:
        return "state-dict"
    if found.modules:
        return "pickle"
    return "checkpoint" if found.state_dicts or found.optimizers else "tensors"


def _described(path: Path, data: Any, found: Found, make) -> ModelFile:
    """The ModelFile of what the walk found; ``make(name, tensor)`` is a found tensor's entry."""
    chosen = model_key(found.state_dicts)
    model = ModelFile(path, _format(data, found), weights_at=chosen or "", facts=found.facts,
                      optimizers=found.optimizers, schedulers=found.schedulers)
    for where, tensors in found.state_dicts.items():
        entries = {name: make(name, tensor) for name, tensor in tensors.items()}
        if where == chosen:
            model.tensors = entries
        elif not (model.format == "torchdeck" and where.split(".")[0] in ("rng", "train_state")):
            model.more[where] = entries
    model.modules = found.modules
    if found.dropped_facts:
        model.notes.append(f"{found.dropped_facts} more values are not shown")
    if len(found.state_dicts) > 1 and chosen is not None:
        model.notes.append(f"the model's weights are taken from {chosen or 'the top level'}; "
                           f"the file also holds tensors at {', '.join(w or '(top)' for w in model.more)}")
    return model


def _refused(path: Path) -> ModelFile:
    """A file weights_only would not load: its globals, and what can be shown without running it
    (from a zip archive, its tensors' values too; the legacy format's are left unread)."""
    if zipfile.is_zipfile(path):
        archive = Archive(path)
        data, named = shadow.read(archive.record("data.pkl"))
        make = archive.entry
    else:
        data, named = shadow.read(path.read_bytes()) if is_pickle(path) else (None, [])
        make = _header_only
    if data is None and not named:
        raise CheckpointError(f"{path} is damaged or not a PyTorch file")
    model = _described(path, data, walk(data), make)
    model.globals = _unsafe(named)
    model.notes[:0] = [_why(model.globals), RESAVE]
    if model.tensors and make is _header_only:
        model.notes.append("the values of its tensors are not shown: torch's legacy format keeps them where "
                           "only loading it finds them")
    return model


def _header_only(name: str, ref: Any) -> TensorEntry:
    return TensorEntry(name, ref.shape, ref.storage.dtype) if isinstance(ref, shadow.TensorRef) else entry(name, ref)


def _why(unsafe: list[str]) -> str:
    return (f"not loaded: loading it would import and run Python code ({', '.join(unsafe[:8])}"
            f"{', …' if len(unsafe) > 8 else ''}); what is shown was read without running it")


def _unsafe(named: list[str]) -> list[str]:
    """The globals weights_only does not allow (its allow-list is torch's own)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    allowed = _get_allowed_globals()
    plain = {f"{module}.{name}" for module, name in shadow.SAFE} | {f"torch._utils.{name}" for name in shadow.REBUILDS}
    return [name for name in named if name not in allowed and name not in plain]


class Archive:
    """A torch zip archive (torch.save's format, TorchScript's): records by name, tensors read
    from their storage records one at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self.infos = {info.filename: info for info in archive.infolist()}
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"{path} is a damaged archive ({first_line(exc)})") from None
        data = [n for n in self.infos if n.endswith("/data.pkl") and n.count("/") == 1]
        if not data:
            raise CheckpointError(f"{path} is a zip file but not a PyTorch archive (no data.pkl)")
        self.prefix = data[0].partition("/")[0]
        self.names = set(self.infos)

    def record(self, name: str, limit: int | None = None) -> bytes:
        """A record's bytes; one that would unpack to more than ``limit`` bytes (MAX_PICKLE unless
        given: a zip bomb) is refused."""
        limit = MAX_PICKLE if limit is None else limit
        info = self.infos[f"{self.prefix}/{name}"]
        if info.file_size > limit:
            raise CheckpointError(f"{self.path}: its {name} would unpack to {info.file_size:,} bytes; "
                                  f"torchdeck reads at most {limit:,}")
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(info)

    def entry(self, name: str, ref: Any) -> TensorEntry:
        if isinstance(ref, torch.Tensor):
            return entry(name, ref)
        return TensorEntry(name, ref.shape, ref.storage.dtype, lambda: self.tensor(name, ref))

    def tensor(self, name: str, ref: shadow.TensorRef) -> torch.Tensor:
        """A shadow tensor's values, from its storage record (checked to hold them all)."""
        record = f"data/{ref.storage.key}"
        dtype = getattr(torch, ref.storage.dtype, None)
        if f"{self.prefix}/{record}" not in self.names or not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"{self.path}: the values of {name} are not in the archive")
        expected = ref.storage.numel * element_size(ref.storage.dtype)
        raw = bytearray(self.record(record, limit=expected))
        try:
            storage = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            return storage.as_strided(ref.shape, ref.stride, ref.offset)
        except (RuntimeError, ValueError) as exc:
            raise CheckpointError(f"{self.path}: the values of {name} do not fit its shape ({first_line(exc)})") \
                from None
