"""Reading and writing checkpoints safely.

A checkpoint is a plain dict of tensors and primitives. It is replaced whole or not at all
(engine.store.atomic), so a crash at any moment leaves either the old or the new file, never a
torn one. It is only ever read with ``torch.load(weights_only=True)``: a file that would need
arbitrary Python objects to load is refused and its payload never runs.
"""

from __future__ import annotations

import pickle
import sys
import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.errors import CheckpointError, TorchdeckError
from engine.store.atomic import write_atomic

FORMAT_VERSION = 1
MAGIC = "torchdeck-checkpoint"


@dataclass
class TrainState:
    """Where a run is: what a checkpoint needs, beyond the weights, to continue exactly."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # next batch within the current epoch
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    bad_epochs: int = 0
    partial_loss: float = 0.0  # summed loss of the batches done in the current epoch
    partial_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def versions() -> dict[str, str]:
    import engine

    return {
        "torchdeck": engine.__version__,
        "torch": str(torch.__version__),
        "python": sys.version.split()[0],
    }


def save(payload: dict[str, Any], path: str | Path) -> Path:
    """Write ``payload`` to ``path`` atomically (see engine.store.atomic).

    A write that fails (disk full, a read-only or vanished folder) leaves the previous file as it
    was and raises a CheckpointError naming the folder and the operating system's reason. A
    process killed mid-write leaves at most a ``.NAME.PID.tmp`` file beside it, which the next
    run in that folder removes (``rundir.RunWriter``).
    """
    return write_atomic(path, lambda handle: torch.save(payload, handle))


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
        if not _is_pickle(path):
            raise CheckpointError(f"{path} is damaged or not a PyTorch file") from None
        raise CheckpointError(
            f"{path} was refused: it is a plain pickle, which torchdeck never loads because loading "
            f"one can run code"
        ) from None
    except PermissionError:
        raise CheckpointError(f"{path} cannot be read: permission denied") from None
    except Exception:  # torch's reader fails in many ways on a file that is not its own
        raise CheckpointError(f"{path} is damaged or not a PyTorch file") from None


# What every torchdeck checkpoint holds, and of which type: checked on loading, so that a damaged
# or hand-edited file is refused in one line here instead of failing deep inside a command.
PARTS = {"config": dict, "task": dict, "epoch": int, "train_state": dict, "model": dict, "optimizer": dict,
         "scheduler": dict, "rng": dict}
RNG_STATES = ("torch", "shuffle", "epoch_shuffle")


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a torchdeck checkpoint: a safe read, then a check that it is one of ours and whole."""
    payload = read_safely(path, map_location)
    if not isinstance(payload, dict) or payload.get("magic") != MAGIC:
        raise CheckpointError(f"{path} is a PyTorch file but not a torchdeck checkpoint")
    version = payload.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer torchdeck (format {version!r}); upgrade to read it")
    problems = _damage(payload)
    if problems:
        raise CheckpointError(f"{path} is a damaged torchdeck checkpoint: {'; '.join(problems)}")
    try:
        RunConfig.from_dict(payload["config"])
    except TorchdeckError as exc:
        raise CheckpointError(f"{path} holds a config this torchdeck cannot use: {exc}") from None
    trained, made_for = payload["task"].get("task"), payload["config"].get("task")
    if trained != made_for:
        raise CheckpointError(
            f"{path} does not fit together: its config is for the task {made_for!r}, its data and weights for {trained!r}"
        )
    return payload


def _damage(payload: dict[str, Any]) -> list[str]:
    """What is missing or of the wrong type in a checkpoint's payload."""
    problems = []
    for key, kind in PARTS.items():
        if key not in payload:
            problems.append(f"it has no {key}")
        elif not isinstance(payload[key], kind) or isinstance(payload[key], bool):
            problems.append(f"its {key} is a {type(payload[key]).__name__}, not a {kind.__name__}")
    if problems:
        return problems
    if not all(isinstance(payload["rng"].get(name), torch.Tensor) for name in RNG_STATES):
        problems.append(f"its rng lacks one of the states {', '.join(RNG_STATES)}")
    if not all(isinstance(value, torch.Tensor) for value in payload["model"].values()):
        problems.append("its model holds something other than tensors")
    train_state = payload["train_state"]
    kinds = {f.name: _TYPES.get(f.type.split("[")[0], object) for f in fields(TrainState)}
    wrong = sorted(str(key) for key, value in train_state.items()
                   if not isinstance(value, kinds.get(key, ())) or isinstance(value, bool))
    if wrong:
        problems.append(f"its train_state has unknown or mistyped field(s) {', '.join(wrong)}")
    known = {f.name for f in fields(TaskMeta)}
    required = {f.name for f in fields(TaskMeta) if f.default is MISSING and f.default_factory is MISSING}
    if not required <= set(payload["task"]) <= known:
        problems.append("its task description is not one this torchdeck knows")
    return problems


_TYPES = {"int": int, "float": (int, float), "list": list, "dict": dict}


def _is_pickle(path: Path) -> bool:
    """Whether the file starts as a pickle of protocol 2 or later does (what torch.save's old format wrote)."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a damaged file may not even list its globals
        return []
