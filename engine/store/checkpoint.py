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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Never, NotRequired, TypedDict

import torch

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.errors import CheckpointError, TorchdeckError
from engine.events import Best
from engine.schema import TIME, Check, misfit, record_fields
from engine.store.atomic import write_atomic

FORMAT_VERSION = 1
MAGIC = "torchdeck-checkpoint"


class HistoryRow(TypedDict):
    """One finished epoch, as a checkpoint's history (and metrics.csv) keeps it."""

    epoch: int
    train_loss: float
    val_loss: float
    metrics: dict[str, float]
    lr: float
    seconds: float
    samples: int


@dataclass
class TrainState:
    """Where a run is: what a checkpoint needs, beyond the weights, to continue exactly."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # next batch within the current epoch
    step: int = 0
    history: list[HistoryRow] = field(default_factory=list)
    best: Best | dict[str, Never] = field(default_factory=dict)  # empty before the first epoch ends
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
        if not is_pickle(path):
            raise CheckpointError(f"{path} is damaged or not a PyTorch file") from None
        raise CheckpointError(
            f"{path} was refused: it is a plain pickle, which torchdeck never loads because loading "
            f"one can run code"
        ) from None
    except PermissionError:
        raise CheckpointError(f"{path} cannot be read: permission denied") from None
    except Exception:  # torch's reader fails in many ways on a file that is not its own
        raise CheckpointError(f"{path} is damaged or not a PyTorch file") from None


def _generator_state(state: torch.Tensor) -> bool:
    """Whether a CPU random generator takes ``state`` (torch checks its dtype, size and content);
    torch.set_rng_state and Generator.set_state accept the same."""
    torch.Generator().set_state(state)
    return True


def _floats(tensor: torch.Tensor) -> bool:
    return tensor.is_floating_point() and tensor.layout == torch.strided


GeneratorState = Annotated[torch.Tensor, Check(_generator_state, "a random generator's state")]
CudaState = Annotated[torch.Tensor, Check(lambda t: t.dtype == torch.uint8 and t.dim() == 1,
                                          "a CUDA random generator's state (bytes)")]
Floats = Annotated[torch.Tensor, Check(_floats, "a tensor of floating-point numbers")]


class RankRng(TypedDict):
    torch: GeneratorState
    cuda: NotRequired[list[CudaState]]


class Rng(RankRng):
    shuffle: GeneratorState
    epoch_shuffle: GeneratorState
    ranks: NotRequired[list[RankRng]]  # a job's processes, each its own streams


class Column(TypedDict):
    """An input column of a user's table (engine.data.tables), as a task description keeps it."""

    name: str
    type: str
    fill: float | str | None
    categories: NotRequired[list[str]]


class Task(TypedDict):
    """TaskMeta as a checkpoint holds it (TaskMeta.to_dict)."""

    task: str
    kind: str
    input_shape: list[int]
    feature_names: list[str]
    class_names: list[str]
    x_mean: Floats
    x_scale: Floats
    y_mean: NotRequired[float]
    y_scale: NotRequired[float]
    image_mode: NotRequired[str | None]
    columns: NotRequired[list[Column] | None]


class Payload(TypedDict):
    """What every torchdeck checkpoint holds, and of which types: checked on loading, so that a
    damaged or hand-edited file is refused in one line here instead of failing deep inside a command."""

    config: dict[str, Any]  # RunConfig.from_dict checks it
    task: Task
    epoch: int
    train_state: TrainState
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: Rng
    global_step: NotRequired[int]
    parameters: NotRequired[int]
    versions: NotRequired[dict[str, str]]
    saved_at: NotRequired[Annotated[float, TIME]]
    test: NotRequired[dict[str, float]]


KINDS = ("regression", "binary", "multiclass")
TASK_FIELDS = frozenset(f.name for f in fields(TaskMeta))
# What a task description must say besides its types: (the part, the condition it meets).
AGREEMENT = (
    ("task", Check(lambda task: task.keys() <= TASK_FIELDS, "the description of a task this torchdeck knows")),
    ("task.kind", Check(lambda task: task["kind"] in KINDS, f"one of {', '.join(KINDS)}")),
    ("task.input_shape", Check(lambda task: min(task["input_shape"]) > 0, "a list of sizes")),
    ("task.x_mean", Check(lambda task: _fits_inputs(task["x_mean"], task), "of the inputs' shape")),
    ("task.x_scale", Check(lambda task: _fits_inputs(task["x_scale"], task), "of the inputs' shape")),
)


def _fits_inputs(statistic: torch.Tensor, task: dict[str, Any]) -> bool:
    """A per-feature (per-channel) statistic that broadcasts over one input."""
    shape = list(task["input_shape"])
    return statistic.dim() <= len(shape) and list(torch.broadcast_shapes(statistic.shape, shape)) == shape


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
    """What is missing from a checkpoint's payload or of the wrong type (the first problem of
    each part), then what its parts do not agree on."""
    hints, required = record_fields(Payload)
    problems = []
    for name, hint in hints.items():
        if name not in payload:
            problems += [f"it has no {name}"] if name in required else []
        elif problem := misfit(payload[name], hint, name):
            problems.append(f"its {problem}")
    if problems:
        return problems
    return [f"its {where} is not {check.what}" for where, check in AGREEMENT if not check.holds(payload["task"])]


def is_pickle(path: Path) -> bool:
    """Whether the file starts as a pickle of protocol 2 or later does (what torch.save's old format wrote)."""
    with open(path, "rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _unsafe_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a damaged file may not even list its globals
        return []
