"""Preparing a run: everything it trains with, built (or restored from a checkpoint) and checked
before any thread starts, so that a front end can report what fails here as bad input.

Reproducibility starts here: the global RNG is seeded before the model is built, batches are
shuffled by a generator of their own, and a checkpoint's RNG states, shuffle state at the start
of its epoch and position inside it are restored, so a resumed run draws what the uninterrupted
one would have drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.data.split import TaskData
from engine.data.tasks import load_task
from engine.errors import CheckpointError, ConfigError
from engine.store import checkpoint, rundir, runs, tblog
from engine.store.checkpoint import TrainState
from engine.store.lock import RunLock, refuse_if_locked
from engine.text import first_line
from engine.train import memory
from engine.train.distributed import World
from engine.train.losses import build_loss
from engine.train.metrics import default_monitor
from engine.train.models import MODELS, build_model
from engine.train.optim import OPTIMIZERS, SCHEDULERS
from engine.train.stopping import EarlyStopping

RESUME_OPTIONS = ("epochs", "device", "patience", "min_delta", "save_every", "amp", "compile", "log")


class Shuffle:
    """The order of the training batches: a generator of its own (the same permutations on every
    process of a job), and its state at the start of the current epoch, so that a run resumed
    inside an epoch draws that epoch's permutation again."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_start = self.generator.get_state()

    def permutation(self, count: int, resuming: bool) -> torch.Tensor:
        """The order of an epoch's ``count`` samples; ``resuming``: the epoch is already under way."""
        if resuming:
            self.generator.set_state(self.epoch_start)
        else:
            self.epoch_start = self.generator.get_state()
        return torch.randperm(count, generator=self.generator)

    def rewind(self) -> None:
        """Back to the start of the current epoch: a run that ends inside it resumes at batch 0
        with this epoch's permutation, not the next one's."""
        self.generator.set_state(self.epoch_start)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"shuffle": self.generator.get_state(), "epoch_shuffle": self.epoch_start}

    def load_state_dict(self, rng: dict[str, Any]) -> None:
        self.generator.set_state(rng["shuffle"])
        self.epoch_start = rng["epoch_shuffle"]


@dataclass(eq=False)
class Parts:
    """What a run trains with: its model, loss, optimizer, data and train state."""

    config: RunConfig
    world: World
    device: torch.device
    data: TaskData
    model: torch.nn.Module
    loss_fn: Callable[..., torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    state: TrainState
    shuffle: Shuffle
    stopping: EarlyStopping
    channels_last: bool  # convolutions on CUDA run fastest on NHWC tensors (the state dict is the same)
    early_stopped: bool = False  # resumed after its early-stopping decision but before its final save

    @classmethod
    def build(cls, config: RunConfig, world: World, saved: dict[str, Any] | None = None) -> "Parts":
        """The parts of a new run of ``config``, or of the run a checkpoint ``saved`` holds."""
        device = world.resolve_device(config.device)
        world.check(config)
        tblog.check(config)  # an optional package the log needs, before anything takes time
        memory.check(config, device, advice=saved is None)  # an image folder's size, before any image is resized
        torch.manual_seed(config.seed)
        shuffle = Shuffle(config.seed)
        data = load_task(config, device, TaskMeta.from_dict(saved["task"]) if saved else None)
        kind = data.meta.kind
        config.check_kind(kind)  # a task of kind auto (csv) has its kind only now that its data is read
        memory.check(config, device, data.meta, advice=saved is None)  # before the model takes any memory
        # A resumed run's weights come from its checkpoint: the weights file may be long gone.
        model = build_model(config.replace(weights=None) if saved else config, data.meta).to(device)
        check_outputs(model, data)
        channels_last = device.type == "cuda" and MODELS[config.model].images_only
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = build_loss(config, kind)
        trainable = [p for p in model.parameters() if p.requires_grad]  # --freeze leaves only the head
        optimizer = OPTIMIZERS[config.optimizer].build(trainable, config)
        scheduler = SCHEDULERS[config.scheduler].build(optimizer, config)
        monitor = default_monitor(kind) if config.monitor == "auto" else config.monitor
        parts = cls(config, world, device, data, model, loss_fn, optimizer, scheduler, TrainState(), shuffle,
                    EarlyStopping(monitor, config.patience, config.min_delta), channels_last)
        if saved:
            parts.restore(saved)
        elif world.rank:  # dropout masks of their own: a stream per rank, rank 0's as in one process
            torch.manual_seed(rank_seed(config.seed, world.rank, 0))
        return parts

    def restore(self, saved: dict[str, Any]) -> None:
        """Take up where the checkpoint ``saved`` left off: weights, optimizer, RNGs, train state."""
        kernels = [{key: group.get(key) for key in ("fused", "foreach")} for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            for group, kernel in zip(self.optimizer.param_groups, kernels):
                group.update(kernel)  # what suits this device, which may not be the one that saved
            if self.scheduler is not None:
                self.scheduler.load_state_dict(saved["scheduler"])
                SCHEDULERS[self.config.scheduler].retarget(self.scheduler, saved["epoch"], self.config.epochs)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint does not fit its own config: {first_line(exc)}") from None
        self._restore_rng(saved)
        self.state = TrainState(**saved["train_state"])
        self.stopping.load_state_dict(saved["train_state"])
        # Killed between its early-stopping decision and the final save: resuming just finishes.
        self.early_stopped = "test" not in saved and self.state.batch == 0 and self.stopping.exhausted

    def _restore_rng(self, saved: dict[str, Any]) -> None:
        rng, rank, size = saved["rng"], self.world.rank, self.world.size
        ranks = rng.get("ranks") or [rng]
        if len(ranks) == size or not rank:  # a job of the size that saved it: each rank's own stream
            own = ranks[rank] if len(ranks) == size else rng
            torch.set_rng_state(own["torch"])
            if self.device.type == "cuda" and own.get("cuda"):
                torch.cuda.set_rng_state_all(own["cuda"])
        else:  # a job of another size: rank 0 goes on with rank 0's stream, the others get fresh ones
            torch.manual_seed(rank_seed(self.config.seed, rank, saved["global_step"]))
        self.shuffle.load_state_dict(rng)

    @property
    def kind(self) -> str:
        return self.data.meta.kind

    def left_over(self) -> int:
        """Samples of the last, partial batch that an epoch skips: one lone sample with batch norm
        (it cannot train on one), and in a job a remainder too small to give every process its
        share (one sample each, two with batch norm). Usually 0."""
        left = len(self.data.splits["train"]) % self.config.batch_size
        return left if left < self.world.size * (2 if self.config.batch_norm else 1) else 0

    def batches(self) -> int:
        """Batches an epoch."""
        size, batch_size = len(self.data.splits["train"]), self.config.batch_size
        return size // batch_size if self.left_over() else math.ceil(size / batch_size)


def check_outputs(model: torch.nn.Module, data: TaskData) -> None:
    """Pass two training samples through ``model`` (in eval mode, without gradients) and refuse,
    in one line, a model that fails on them or whose output does not fit the task's loss: one
    row of ``outputs`` numbers per sample. A user's model is checked before it trains, not at
    the first batch's backward pass (or never: a [B] output against [B, 1] targets broadcasts)."""
    split = data.splits["train"]
    inputs, _ = next(split.batches(torch.arange(min(2, len(split))), 2, 0, 1))
    expected = [len(inputs), data.meta.outputs]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(inputs)
    except Exception as exc:
        raise ConfigError(f"model: a batch of inputs of shape {list(inputs.shape)} fails in the model: "
                          f"{type(exc).__name__}: {first_line(exc)}", option="model") from None
    finally:
        model.train(was_training)
    if not isinstance(outputs, torch.Tensor) or list(outputs.shape) != expected:
        actual = list(outputs.shape) if isinstance(outputs, torch.Tensor) else type(outputs).__name__
        what = {"multiclass": "one logit per class", "binary": "one logit"}.get(data.meta.kind, "one number")
        raise ConfigError(f"model: for inputs of shape {list(inputs.shape)} the model gives {actual}; the "
                          f"{data.meta.kind} task needs {expected} ({what} per sample)", option="model")


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A seed for the global RNG of process ``rank`` > 0 of a job: distinct per rank and run."""
    return (seed * 1_000_003 + rank * 7_919 + step) % (2 ** 63)


def load_for_resume(path: str | Path) -> tuple[dict[str, Any], Path, Path | None, RunLock | None]:
    """(checkpoint, its path, its run directory, that directory's lock, now held) of a run to
    continue; refused when its run directory holds symbolic links (before anything in it is
    read) or while another process holds its lock (before it is asked for a checkpoint)."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if folder == Path(path) or (folder / rundir.EVENTS).is_file():  # what runs.locate takes for a run directory
        rundir.refuse_links(folder)
        refuse_if_locked(folder)
    ckpt_path, run_dir = runs.locate(path)  # before locking: its own hold would make a run look running
    lock = RunLock(run_dir) if run_dir else None
    try:
        return checkpoint.load(ckpt_path), ckpt_path, run_dir, lock
    except BaseException:
        if lock:
            lock.release()
        raise


def resumed_config(saved: dict[str, Any], ckpt_path: Path, run_dir: Path | None,
                   changes: dict[str, Any]) -> tuple[RunConfig, Path | None]:
    """(config, run directory to continue in) of a resumed run: the checkpoint's own config with
    the ``changes`` resuming allows; no directory (a new one) when it branches off.

    Where a run writes never comes from the file: a run directory continues in itself (or
    branches beside itself), and a loose checkpoint (a downloaded ``model.pt``) goes to
    ``changes["out"]`` or the default folder under a new name, whatever its saved ``out`` and
    ``name`` say. Going to a new directory, ``saved``'s train state may get a best record of
    its own (see ``_best_of_its_own``).
    """
    config = RunConfig.from_dict(saved["config"])
    for key, value in changes.items():
        if key == "out" and run_dir is not None:
            raise ConfigError(f"out: {run_dir} is a run directory, which resumes into itself; "
                              f"--out is for a loose .pt file", option="out")
        if key not in (*RESUME_OPTIONS, "out"):
            raise ConfigError(
                f"{key} cannot change when resuming (the run was trained with {key}={getattr(config, key)!r}); "
                f"only {', '.join(RESUME_OPTIONS)} can", option=key,
            )
    config = config.replace(**changes)
    if run_dir is None:  # RunConfig.out: the option's default, the folder a new run goes to
        config = config.replace(out=changes.get("out", RunConfig.out), name=None)
    # All epochs done but no test scores: killed before the final save, which resuming does now.
    if saved["epoch"] > config.epochs or saved["epoch"] == config.epochs and "test" in saved:
        raise ConfigError(
            f"the run in {ckpt_path} already completed {saved['epoch']} of {config.epochs} epochs; "
            f"pass --epochs with a larger total to train further", option="epochs",
        )
    if run_dir is not None and ckpt_path.name != rundir.LAST:
        # Continuing from best.pt (or a copy) in place would overwrite the newer last.pt:
        # branch into a run directory of its own instead.
        config = config.replace(out=str(run_dir.parent), name=f"{run_dir.name}-from-{ckpt_path.stem}")
        run_dir = None
    if run_dir is None:
        saved["train_state"] = _best_of_its_own(saved["train_state"])
    return config, run_dir


def _best_of_its_own(train_state: dict[str, Any]) -> dict[str, Any]:
    """The train state of a run resumed into a new directory, which has only its checkpoint's
    weights: when the best epoch is an earlier one, whose weights stayed behind, the record
    starts again at the checkpoint's own epoch (inside an epoch: at the next one it trains),
    so the final test and the new directory's best.pt are of an epoch it holds."""
    best, epoch, inside = train_state.get("best"), train_state["epoch"], train_state.get("batch", 0) > 0
    if not best or best["epoch"] == epoch and not inside:
        return train_state
    own = {}
    if not inside:
        row, monitor = train_state["history"][-1], best["monitor"]
        value = row["val_loss"] if monitor == "val_loss" else row["metrics"][monitor]
        own = {"epoch": epoch, "monitor": monitor, "value": value, "val_loss": row["val_loss"]}
    return {**train_state, "best": own, "bad_epochs": 0}
