"""Reading and writing checkpoints safely.

A checkpoint is a plain dict of tensors and primitives. It is written to a temporary file in
the same folder, flushed to disk and renamed over the old one, so a crash at any moment leaves
either the old or the new file, never a torn one. It is only ever read with
``torch.load(weights_only=True)``: a file that would need arbitrary Python objects to load is
refused and its payload never runs.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError

FORMAT_VERSION = 1
MAGIC = "torchdeck-checkpoint"


def versions() -> dict[str, str]:
    import engine

    return {
        "torchdeck": engine.__version__,
        "torch": str(torch.__version__),
        "python": sys.version.split()[0],
    }


def save(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_safely(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Whatever PyTorch file ``path`` holds, read with ``weights_only=True``; every failure explained.

    Checkpoints and model weights both come through here, so a file that would need arbitrary
    Python objects is refused the same way wherever it is given, and its payload never runs.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a PyTorch file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty; it is not a PyTorch file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: the error says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise CheckpointError(
                f"{path} was refused: loading it would run or build Python objects "
                f"({', '.join(unsafe)}); torchdeck only reads plain data"
            ) from None
        raise CheckpointError(
            f"{path} was refused: it is a plain pickle, which torchdeck never loads because loading "
            f"one can run code"
        ) from None
    except PermissionError:
        raise CheckpointError(f"{path} cannot be read: permission denied") from None
    except Exception:  # torch's reader fails in many ways on a file that is not its own
        raise CheckpointError(f"{path} is damaged or not a PyTorch file") from None


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a torchdeck checkpoint: a safe read, then a check that it is one of ours."""
    payload = read_safely(path, map_location)
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise CheckpointError(f"{path} is a PyTorch file but not a torchdeck checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer torchdeck (format {payload['format_version']}); upgrade to read it"
        )
    return payload


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a damaged file may not even list its globals
        return []
