"""A training run: prepared in the caller's thread, trained in a worker thread.

``Run.new(config)`` or ``Run.resume(path)`` does everything that can fail because of the user's
input (checking the device, loading data, reading a checkpoint, creating the run directory)
before any thread starts, so a front end can report those errors as bad input. ``start()``
then runs the plain PyTorch loop in a thread; the loop reports through ``run.events`` and obeys
``run.control`` between batches.

Reproducibility: the global RNG is seeded before the model is built, batches are shuffled by a
generator of their own, and a checkpoint stores every RNG state, the shuffle state at the start
of the current epoch and the position inside it. A run stopped at any batch and resumed ends
with the same weights as one that was never interrupted (on the CPU).

Checkpoints: every epoch end takes a snapshot (a CPU copy of the weights, optimizer and RNG
states); ``last.pt`` and, when the epoch improved, ``best.pt`` are written from the snapshots once
``save_every`` seconds have passed since the last write (also between batches of a long epoch),
and always when the run stops, fails or ends. Writing 175 files for a one-second Iris run cost
as much as its training; a kill -9 now loses at most ``save_every`` seconds of work, and a
diverged run still leaves the last good snapshot on disk.

Several processes (``torchdeck train --nproc N``, or torchrun): each rank trains a DDP-wrapped
copy of the model on its slice of every global batch (the same permutation on every rank), with
each rank's loss scaled so that DDP's gradient average is the gradient of the global batch's
mean loss: the run follows the one-process trajectory up to the order of float sums (dropout
masks differ). Ranks exchange stop requests, rank 0's checkpoint decision and the running loss
at sync points about every ``BATCH_EVENT_INTERVAL`` seconds (never per batch in one process),
evaluate contiguous shards of the validation and test splits and gather the outputs, so every
rank computes the same metrics and takes the same decisions. Only rank 0 writes the run
directory; its checkpoints hold the plain module's weights and every rank's RNG state.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.data.split import TaskData
from engine.data.tasks import load_task
from engine.device import device_name
from engine.errors import CheckpointError, ConfigError, TorchdeckError
from engine.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    Event,
    EventStream,
    Message,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
)
from engine.store import checkpoint, rundir
from engine.store.checkpoint import TrainState
from engine.text import first_line
from engine.train.control import Control
from engine.train.distributed import PeerFailed, World
from engine.train.losses import build_loss
from engine.train.metrics import (
    HIGHER_IS_BETTER,
    compute,
    default_monitor,
    metric_names,
)
from engine.train.models import MODELS, build_model, count_parameters
from engine.train.optim import OPTIMIZERS, SCHEDULERS

TINY_STEP = 2**22  # parameters x batch size below which a step runs on one CPU thread (see Run._threads)
BATCH_EVENT_INTERVAL = 0.1  # seconds between batch events (an epoch event tells that an epoch is complete)
RESUME_OPTIONS = ("epochs", "device", "patience", "min_delta", "save_every", "amp", "compile")


class Diverged(Exception):
    """The loss became NaN or infinite."""


class Run:
    """One training run, its worker thread and the stream of its events."""

    def __init__(self, config: RunConfig, *, state: dict[str, Any] | None = None,
                 run_dir: Path | None = None, resumed_from: str | None = None, world: World | None = None):
        self.config = config
        self.world = world = world or World.single()
        world.setup()
        with world.together():  # a failure on one rank (say, rank 0's run directory) fails them all
            self.device = world.resolve_device(config.device)
            world.check(config)
            torch.manual_seed(config.seed)
            self.shuffle = torch.Generator().manual_seed(config.seed)  # the same permutations on every rank
            self.epoch_shuffle = self.shuffle.get_state()
            self.data: TaskData = load_task(config, self.device, TaskMeta.from_dict(state["task"]) if state else None)
            self.kind = self.data.meta.kind
            config.check_kind(self.kind)  # a task of kind auto (csv) has its kind only now that its data is read
            # A resumed run's weights come from its checkpoint: the weights file may be long gone.
            self.model = build_model(config.replace(weights=None) if state else config, self.data.meta).to(self.device)
            # Convolutions on CUDA run fastest on NHWC tensors; the state dict is the same either way.
            self.channels_last = self.device.type == "cuda" and MODELS[config.model].images_only
            if self.channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
            self.loss_fn = build_loss(config, self.kind)
            self.optimizer = OPTIMIZERS[config.optimizer].build(self.model.parameters(), config)
            self.scheduler = SCHEDULERS[config.scheduler].build(self.optimizer, config)
            self.monitor = default_monitor(self.kind) if config.monitor == "auto" else config.monitor
            self.state = TrainState()
            self.stop_cause = "completed"
            self.resumed_from = resumed_from
            self.unsaved: dict[str, dict[str, Any] | None] = {}  # snapshots waiting to be written (rank 0's)
            self.fixed: dict[str, Any] | None = None  # the parts of every checkpoint that never change
            self.best_weights: dict[str, torch.Tensor] | None = None  # of the best epoch, once this process saw it
            self.saved_at = time.monotonic()
            self.early_stopped = False
            if state:
                self._restore(state)
            elif world.rank:  # dropout masks of their own: a stream per rank, rank 0's as in one process
                torch.manual_seed(_rank_seed(config.seed, world.rank, 0))
            if world.is_main and run_dir is None:
                run_dir = rundir.create(config.out, config.name or rundir.default_name(config.task, config.model))
        self.run_dir = Path(world.broadcast(str(run_dir)))
        # Training goes through DDP (which also puts the same weights on every rank) and, with
        # ``compile``, torch.compile; evaluation and checkpoints use the plain module.
        self.forward = torch.compile(self.model) if config.compile else self.model  # saved: self.model's weights
        self.train_forward = self.forward
        if world.distributed:
            self.train_forward = world.wrap(self.model, self.device)
            if config.compile:
                self.train_forward = torch.compile(self.train_forward)
        self.part = (world.rank, world.size) if world.distributed else None  # this rank's slice of each batch
        self.stop_agreed = False  # a job's processes stop together, at a sync point (see _sync)
        self.lost_peer = False  # the run failed because another process of its job did
        self.sync_every, self.next_sync, self.synced = 1, 1, (0, 0.0)
        self.epoch_loss = 0.0  # a job's summed loss of the current epoch's batches up to the last sync point
        self.next_report = 0.0
        self.epoch_batches = 0
        self.events = EventStream()
        self.control = Control()
        self.writer = None
        if world.is_main:
            self.writer = rundir.RunWriter(self.run_dir, metric_names(self.kind))
            self.writer.write_config(config.to_toml())
            self.writer.rewrite_metrics(self.state.history)
            self.events.subscribe(self.writer)
        self.thread: threading.Thread | None = None
        self.result: Event | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def new(cls, config: RunConfig, world: World | None = None) -> "Run":
        """A new run of ``config``; ``world``: the job it is one process of (default: the one
        torchrun describes in the environment, or none)."""
        if config.data_dir:  # recorded absolute, so later commands find the data from any folder
            config = config.replace(data_dir=str(Path(config.data_dir).expanduser().resolve()))
        return cls(config, world=world or World.from_env())

    @classmethod
    def resume(cls, path: str | Path, world: World | None = None, **changes: Any) -> "Run":
        """Continue the run saved at ``path`` (a run directory or a ``.pt`` file).

        Only ``epochs`` (to train further), ``device``, ``patience`` and ``min_delta`` may change;
        everything else is the checkpoint's own config. In a job of several processes rank 0
        reads the checkpoint and hands it to the others, whatever the job's size was before.
        """
        world = world or World.from_env()
        world.setup()
        found = None
        with world.together():
            if world.is_main:
                found = _load_for_resume(path)
        state, ckpt_path, run_dir = world.broadcast(found)
        saved = RunConfig.from_dict(state["config"])
        for key, value in changes.items():
            if key not in RESUME_OPTIONS:
                raise ConfigError(
                    f"{key} cannot change when resuming (the run was trained with {key}={getattr(saved, key)!r}); "
                    f"only {', '.join(RESUME_OPTIONS)} can"
                )
        config = saved.replace(**changes)
        # All epochs done but no test scores: killed before the final save, which resuming does now.
        if state["epoch"] > config.epochs or state["epoch"] == config.epochs and "test" in state:
            raise ConfigError(
                f"the run in {ckpt_path} already completed {state['epoch']} of {config.epochs} epochs; "
                f"pass --epochs with a larger total to train further"
            )
        if run_dir is not None and ckpt_path.name != rundir.LAST:
            # Continuing from best.pt (or a copy) in place would overwrite the newer last.pt:
            # branch into a run directory of its own instead.
            config = config.replace(out=str(run_dir.parent), name=f"{run_dir.name}-from-{ckpt_path.stem}")
            run_dir = None
        return cls(config, state=state, run_dir=run_dir, resumed_from=str(ckpt_path), world=world)

    def _restore(self, state: dict[str, Any]) -> None:
        kernels = [{key: group.get(key) for key in ("fused", "foreach")} for group in self.optimizer.param_groups]
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            for group, kernel in zip(self.optimizer.param_groups, kernels):
                group.update(kernel)  # what suits this device, which may not be the one that saved
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint does not fit its own config: {first_line(exc)}") from None
        rng, rank = state["rng"], self.world.rank
        ranks = rng.get("ranks") or [rng]
        if len(ranks) == self.world.size or not rank:  # a job of the size that saved it: each rank's own stream
            own = ranks[rank] if len(ranks) == self.world.size else rng
            torch.set_rng_state(own["torch"])
            if self.device.type == "cuda" and own.get("cuda"):
                torch.cuda.set_rng_state_all(own["cuda"])
        else:  # a job of another size: rank 0 goes on with rank 0's stream, the others get fresh ones
            torch.manual_seed(_rank_seed(self.config.seed, rank, state["global_step"]))
        self.shuffle.set_state(rng["shuffle"])
        self.epoch_shuffle = rng["epoch_shuffle"]
        self.state = TrainState(**state["train_state"])
        # Killed between its early-stopping decision and the final save: resuming just finishes.
        self.early_stopped = ("test" not in state and self.state.batch == 0 and self.config.patience > 0
                              and self.state.bad_epochs >= self.config.patience)

    # --- running ------------------------------------------------------------------------

    def start(self) -> "Run":
        self.thread = threading.Thread(target=self._main, name="torchdeck-run")
        self.events.producer = self.thread
        self.thread.start()
        return self

    def wait(self) -> Event | None:
        """Block until the run ends; the terminal event (finished, stopped or failed)."""
        if self.thread is not None:
            self.thread.join()
        return self.result

    def __iter__(self):
        return iter(self.events)

    def _emit(self, event: Event) -> None:
        if event.terminal:
            self.result = event
        self.events.publish(event)

    def _main(self) -> None:
        try:
            self._emit(self._started())
            for note in self.data.notes:  # warnings: plain output shows those, on stderr
                self._emit(Message(note, level="warning"))
            if self.config.compile:
                self._emit(Message("torch.compile: the first batch (and the first validation) compile the "
                                   "model, which can take a minute"))
            with self._threads():
                self._train()
        except (Diverged, TorchdeckError) as exc:
            self.lost_peer = isinstance(exc, PeerFailed)
            self._fail(str(exc))
        except Exception as exc:  # an engine bug or a runtime error (out of memory, disk full, a lost peer)
            lost = self.world.lost(exc)
            self.lost_peer = lost is not None
            self._fail(lost or f"{type(exc).__name__}: {exc}", "" if lost else traceback.format_exc())
        finally:
            self.data.close()  # its DataLoader workers stop now, not whenever the run is collected

    @contextmanager
    def _threads(self):
        """One intra-op thread for a tiny model on the CPU, for the length of the run.

        Its operations are too small to split, yet from a thread other than the main one every
        one of them pays for the OpenMP team: the Iris preset trains at 46,000 samples/s in a
        worker thread with 2 threads and 69,000 with 1 (62,000 in the main thread). Models with
        real matrix products keep every thread (the MNIST MLP loses a third with one).
        """
        before = torch.get_num_threads()
        tiny = count_parameters(self.model) * self.config.batch_size < TINY_STEP
        if tiny and self.device.type == "cpu" and not self.world.distributed:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _fail(self, message: str, details: str = "") -> None:
        """Write the snapshots still waiting (all taken before the failure), then report it."""
        try:
            self._write_unsaved()
        except Exception as exc:  # the disk is full too: the first failure is the one to report
            message += f" (and the last snapshot could not be written: {exc})"
        self._emit(RunFailed(message=message, run_dir=str(self.run_dir), details=details))

    def _started(self) -> RunStarted:
        return RunStarted(
            run_dir=str(self.run_dir),
            config=self.config.to_dict(),
            device=str(self.device),
            device_name=device_name(self.device),
            parameters=count_parameters(self.model),
            sizes=self.data.sizes(),
            epochs=self.config.epochs,
            batches=self._batches(),
            start_epoch=self.state.epoch,
            resumed_from=self.resumed_from,
            pid=os.getpid(),
            host=socket.gethostname(),
            versions=checkpoint.versions(),
            world_size=self.world.size,
        )

    def _left_over(self) -> int:
        """Samples of the last, partial batch that an epoch skips: one lone sample with batch norm
        (it cannot train on one), and in a job a remainder too small to give every process its
        share (one sample each, two with batch norm). Usually 0."""
        left = len(self.data.splits["train"]) % self.config.batch_size
        return left if left < self.world.size * (2 if self.config.batch_norm else 1) else 0

    def _batches(self) -> int:
        size, batch_size = len(self.data.splits["train"]), self.config.batch_size
        return size // batch_size if self._left_over() else math.ceil(size / batch_size)

    def _train(self) -> None:
        config, state, part = self.config, self.state, self.part
        train = self.data.splits["train"]
        batch_size, batches = config.batch_size, self._batches()
        size = min(batches * batch_size, len(train))  # samples trained on per epoch
        self.epoch_batches = batches
        if left := self._left_over():
            why = ("batch norm needs 2 samples per batch" if not part else
                   f"the last batch would not give each of the {self.world.size} processes its share")
            which = "one left-over sample (a different one" if left == 1 else f"{left} left-over samples (different ones"
            self._emit(Message(f"{why}: each epoch skips its {which} each time)", level="warning"))
        if self.early_stopped:
            self.stop_cause = "early_stopping"
            self._finish()
            return
        self.next_report = 0.0  # the first batch reports; then one every BATCH_EVENT_INTERVAL
        for epoch in range(state.epoch, config.epochs):
            if state.batch == 0:
                self.epoch_shuffle = self.shuffle.get_state()
            else:  # resuming inside an epoch: replay its permutation
                self.shuffle.set_state(self.epoch_shuffle)
            order = torch.randperm(len(train), generator=self.shuffle).to(self.device)
            losses = torch.zeros(batches, device=self.device)  # per batch: this process's summed loss
            first = state.batch
            epoch_start = time.perf_counter() - state.partial_seconds
            self.epoch_loss = 0.0
            self.next_sync, self.synced = first + self.sync_every, (first, time.perf_counter())
            self.model.train()
            for index, (inputs, targets) in zip(range(first, batches),
                                                train.batches(order, batch_size, first, batches, part)):
                if self._should_stop(epoch, index, losses, first, epoch_start):
                    return
                if self.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                with self._autocast():
                    loss = self.loss_fn(self.train_forward(inputs), targets)
                self.optimizer.zero_grad(set_to_none=True)
                if part:  # DDP averages the ranks' gradients: weigh each by its share of the global batch
                    (loss * (len(targets) * part[1] / min(batch_size, len(train) - index * batch_size))).backward()
                else:
                    loss.backward()
                self.optimizer.step()
                losses[index] = loss.detach() * len(targets)
                state.step += 1
                if part:
                    self._sync(epoch, index, losses, first, epoch_start, size)
                else:
                    self._after_batch(epoch, index, losses, first, epoch_start, size)
            total = state.partial_loss + (self.epoch_loss if part else float(losses[first:].sum()))
            if not math.isfinite(total):
                self._check_finite(losses, first, batches, epoch)  # names the batch
            state.batch, state.partial_loss, state.partial_seconds = 0, 0.0, 0.0
            if self._end_epoch(epoch, total / size, time.perf_counter() - epoch_start, size):
                break
        self._finish()

    def _after_batch(self, epoch, index, losses, first, epoch_start, size) -> None:
        """One process: a batch event when one is due (an epoch's end is told by its epoch
        event), a mid-epoch checkpoint when one is due."""
        batches = self.epoch_batches
        now = time.perf_counter()
        if now >= self.next_report:
            self.next_report = now + BATCH_EVENT_INTERVAL
            self._check_finite(losses, first, index + 1, epoch)
            self._report_batch(epoch, index, float(losses[first:index + 1].sum()), first, epoch_start, size)
        if self.config.save_every and self._save_due() and index + 1 < batches:
            self._check_finite(losses, first, index + 1, epoch)
            self._save_between_batches(index + 1, float(losses[first:index + 1].sum()), epoch_start)

    def _sync(self, epoch, index, losses, first, epoch_start, size) -> None:
        """A job: at a sync point (about every BATCH_EVENT_INTERVAL seconds, and the last batch of
        an epoch) the processes exchange one row each: a stop request (from any), rank 0's
        checkpoint decision and next sync distance, their summed loss so far this epoch and their
        first non-finite batch. Every process then takes the same decisions."""
        batches = self.epoch_batches
        if index + 1 < self.next_sync and index < batches - 1:
            return
        now = time.perf_counter()
        since, at = self.synced
        steps = max(int(BATCH_EVENT_INTERVAL * (index + 1 - since) / max(now - at, 1e-9)), 1)
        window = losses[first:index + 1]
        bad = (~torch.isfinite(window)).nonzero()
        bad_index = first + int(bad[0]) if len(bad) else -1
        save = bool(self.config.save_every and self._save_due() and index + 1 < batches)
        rows = self.world.rows([
            float(self.control.stop_requested), float(save), float(min(steps, 10_000)), float(window.sum()),
            float(bad_index), float(losses[bad_index]) if len(bad) else 0.0,
        ])
        self.sync_every = int(rows[0, 2])
        self.next_sync, self.synced = index + 1 + self.sync_every, (index + 1, now)
        self.stop_agreed = bool(rows[:, 0].max() > 0)
        self.epoch_loss = float(rows[:, 3].sum())  # the whole job's, of this epoch's batches first..index
        failed = [row for row in rows.tolist() if row[4] >= 0]
        if failed:
            worst = min(failed, key=lambda row: row[4])
            self._diverged(epoch, int(worst[4]), worst[5])
        if self.world.is_main and (now >= self.next_report or index == batches - 1):
            self.next_report = now + BATCH_EVENT_INTERVAL
            self._report_batch(epoch, index, self.epoch_loss, first, epoch_start, size)
        if rows[0, 1] > 0:
            self._save_between_batches(index + 1, self.epoch_loss, epoch_start)

    def _should_stop(self, epoch, index, losses, first, epoch_start) -> bool:
        control = self.control
        if self.part:  # a job stops where its processes agreed to (a pause would stall the others)
            if not self.stop_agreed:
                return False
            loss_sum = self.epoch_loss
        else:
            if control.paused and not control.stop_requested:
                self._emit(Message(f"paused at epoch {epoch + 1}, batch {index + 1}"))
                control.wait_while_paused()
                if not control.stop_requested:
                    self._emit(Message("resumed"))
            if not control.stop_requested:
                return False
            self._check_finite(losses, first, index, epoch)
            loss_sum = float(losses[first:index].sum())
        self.state.__dict__.update(self._position(index, loss_sum, epoch_start))
        # The run ends here: rewound, the generator makes a resume at batch 0 draw this epoch's
        # permutation again instead of the next one.
        self.shuffle.set_state(self.epoch_shuffle)
        self.unsaved[rundir.LAST] = self._snapshot()
        self._write_unsaved()
        resume = rundir.resume_command(self.run_dir)
        if self.world.distributed and self.world.local_size == self.world.size:
            resume += f" --nproc {self.world.size}"
        self._emit(RunStopped(
            run_dir=str(self.run_dir), reason=control.stop_reason or "another process of the job was stopped",
            epoch=epoch + 1, batch=index, checkpoint=str(self.run_dir / rundir.LAST), resume_command=resume,
        ))
        return True

    def _position(self, index: int, loss_sum: float, epoch_start: float) -> dict[str, Any]:
        """The train state's place before batch ``index`` of the current epoch; ``loss_sum``: the
        summed loss of this epoch's batches since the run (re)started it."""
        return dict(batch=index, partial_loss=self.state.partial_loss + loss_sum,
                    partial_seconds=time.perf_counter() - epoch_start)

    def _save_between_batches(self, index: int, loss_sum: float, epoch_start: float) -> None:
        self.unsaved[rundir.LAST] = self._snapshot(self._position(index, loss_sum, epoch_start))
        self._write_unsaved()

    def _report_batch(self, epoch, index, loss_sum, first, epoch_start, size) -> None:
        batch_size = self.config.batch_size
        done = min((index + 1) * batch_size, size)
        loss = (self.state.partial_loss + loss_sum) / done
        elapsed = max(time.perf_counter() - epoch_start, 1e-9)
        rate = (done - first * batch_size) / max(elapsed - self.state.partial_seconds, 1e-9)
        self._emit(BatchProgress(
            epoch=epoch + 1, epochs=self.config.epochs, batch=index + 1, batches=self._batches(),
            step=self.state.step, loss=loss, samples_per_s=rate, eta_s=(size - done) / max(rate, 1e-9),
        ))

    def _check_finite(self, losses, first, end, epoch) -> None:
        window = losses[first:end]
        if bool(torch.isfinite(window).all()):
            return
        bad = first + int((~torch.isfinite(window)).nonzero()[0])
        self._diverged(epoch, bad, float(losses[bad]))

    def _diverged(self, epoch: int, batch: int, value: float) -> None:
        kept = f"last.pt and best.pt hold epoch {self.state.epoch}" if self.state.epoch else "no checkpoint was written"
        raise Diverged(
            f"the loss became {value} at epoch {epoch + 1}, batch {batch + 1} "
            f"(learning rate {self._lr():g}): training diverged; try a lower --lr ({kept})"
        )

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _end_epoch(self, epoch: int, train_loss: float, seconds: float, samples: int) -> bool:
        """Validate, schedule, record and checkpoint one epoch; True when training should stop."""
        config, state = self.config, self.state
        val_loss, metrics = self.evaluate("val")
        if not math.isfinite(val_loss):
            raise Diverged(
                f"the validation loss became {val_loss} at epoch {epoch + 1} (learning rate {self._lr():g}): "
                f"training diverged; try a lower --lr."
            )
        lr = self._lr()
        if self.scheduler is not None:
            if SCHEDULERS[config.scheduler].needs_metric:
                self.scheduler.step(val_loss)
            else:
                self.scheduler.step()
        value = val_loss if self.monitor == "val_loss" else metrics[self.monitor]
        improved = self._improves(value, val_loss)
        state.epoch = epoch + 1
        state.history.append(dict(epoch=state.epoch, train_loss=train_loss, val_loss=val_loss,
                                  metrics=metrics, lr=lr, seconds=seconds, samples=samples))
        if improved:
            state.best = {"epoch": state.epoch, "monitor": self.monitor, "value": value, "val_loss": val_loss}
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        snapshot = self.unsaved[rundir.LAST] = self._snapshot()  # before listeners can touch anything
        if improved:  # every rank keeps the best weights: the test split is evaluated by all
            self.unsaved[rundir.BEST] = snapshot
            self.best_weights = snapshot["model"] if snapshot else _copied(self.model.state_dict())
        self._emit(EpochEnded(epoch=state.epoch, epochs=config.epochs, train_loss=train_loss, val_loss=val_loss,
                              metrics=metrics, lr=lr, seconds=seconds, samples=samples, improved=improved))
        if self._save_due():
            self._write_unsaved()
        if config.patience and state.bad_epochs >= config.patience and state.epoch < config.epochs:
            best = state.best
            self._emit(Message(
                f"early stopping: {self.monitor} has not improved for {config.patience} epochs "
                f"(best {best['value']:.4f} at epoch {best['epoch']})"
            ))
            self.stop_cause = "early_stopping"
            return True
        return False

    def _improves(self, value: float, val_loss: float) -> bool:
        best = self.state.best
        if not best:
            return True
        gain = value - best["value"] if self.monitor in HIGHER_IS_BETTER else best["value"] - value
        if gain > self.config.min_delta:
            return True
        # Equal accuracy (common on small validation sets): a lower loss still counts as better.
        return self.monitor != "val_loss" and gain == 0 and val_loss < best["val_loss"]

    @torch.no_grad()
    def evaluate(self, split: str, model: torch.nn.Module | None = None) -> tuple[float, dict[str, float]]:
        """(mean loss, metrics) of ``model`` (default: the run's) on a split. In a job each process
        computes the outputs of its share of the split, and every process gets all of them."""
        data = self.data.splits[split]
        self.world.share_buffers(model or self.model)
        with self._autocast():
            outputs = data.outputs(model or self.forward, self.part)
        outputs = self.world.concat(outputs.float(), len(data))
        loss = float(self.loss_fn(outputs, data.y))
        return loss, compute(self.kind, outputs, data.y, self.data.meta)

    def _autocast(self):
        """bfloat16 autocast with ``amp`` (no loss scaling needed, unlike float16), else nothing."""
        if self.config.amp:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _finish(self) -> None:
        best_model = copy.deepcopy(self.model)  # not a fresh build: that would draw from the RNG
        best = self.best_weights
        if best is None:  # a resumed run may have seen its best epoch in an earlier process: on disk
            best = self.world.broadcast(
                checkpoint.load(self.run_dir / rundir.BEST)["model"] if self.world.is_main else None)
        best_model.load_state_dict(best)
        test_loss, test_metrics = self.evaluate("test", best_model)
        test = {"loss": test_loss, **test_metrics}
        self.unsaved[rundir.LAST] = self._snapshot(test=test)
        self._write_unsaved()
        self._emit(RunFinished(
            run_dir=str(self.run_dir), reason=self.stop_cause,
            epochs_done=self.state.epoch, best=dict(self.state.best), test=test,
            seconds=sum(row["seconds"] for row in self.state.history),
        ))

    # --- checkpoints --------------------------------------------------------------------

    def _save_due(self) -> bool:
        return time.monotonic() - self.saved_at >= self.config.save_every
    def _write_unsaved(self) -> None:
        """Write the waiting snapshots, best.pt before last.pt: a last.pt on disk never names a
        best epoch newer than best.pt's. A failed write is not retried. Rank 0 alone writes."""
        unsaved, self.unsaved = self.unsaved, {}
        for name in (rundir.BEST, rundir.LAST):
            if unsaved.get(name) is not None:
                path = checkpoint.save(unsaved[name], self.run_dir / name)
                self._emit(CheckpointSaved(path=str(path), kind=name.removesuffix(".pt"), epoch=unsaved[name]["epoch"]))
        self.saved_at = time.monotonic()

    def _snapshot(self, position: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any] | None:
        """The checkpoint of this moment, every tensor copied to the CPU: training goes on while
        it waits to be written. ``position``: a place inside the current epoch. In a job every
        process takes part (rank 0 collects their RNG states) and only rank 0 gets the snapshot."""
        ranks = self.world.gather(self._rng()) if self.world.distributed else None
        if not self.world.is_main:
            return None
        payload = self._payload(position or {}, **extra)
        if ranks:
            payload["rng"]["ranks"] = ranks
        return payload

    def _rng(self) -> dict[str, Any]:
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []}

    def _payload(self, position: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A checkpoint's contents; what changes during the run is copied, what does not is
        shared by every snapshot (an epoch of Iris lasts about as long as copying it all)."""
        if self.fixed is None:
            self.fixed = {
                "magic": checkpoint.MAGIC,
                "format_version": checkpoint.FORMAT_VERSION,
                "config": self.config.to_dict(),
                "task": self.data.meta.to_dict(),
                "parameters": count_parameters(self.model),
                "versions": checkpoint.versions(),
            }
        state = self.state
        return {
            **self.fixed,
            "epoch": state.epoch,
            "global_step": state.step,
            # history rows and best are replaced, never changed in place: shallow copies suffice
            "train_state": {**state.to_dict(), "history": list(state.history), "best": dict(state.best), **position},
            **_copied({
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "rng": {**self._rng(), "shuffle": self.shuffle.get_state(), "epoch_shuffle": self.epoch_shuffle},
            }),
            "saved_at": time.time(),
            **extra,
        }


def _load_for_resume(path: str | Path) -> tuple[dict[str, Any], Path, Path | None]:
    """(checkpoint, its path, its run directory) of a run to continue, refused while it trains."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if pid := rundir.training_pid(folder):
        raise ConfigError(f"the run in {folder} is still training (process {pid}); stop it before resuming")
    ckpt_path, run_dir = rundir.locate(path)
    return checkpoint.load(ckpt_path), ckpt_path, run_dir


def _rank_seed(seed: int, rank: int, step: int) -> int:
    """A seed for the global RNG of process ``rank`` > 0 of a job: distinct per rank and run."""
    return (seed * 1_000_003 + rank * 7_919 + step) % (2 ** 63)


def _copied(value: Any) -> Any:
    """``value`` with every tensor in it (nested in dicts and lists) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copied(item) for item in value]
    return value


def start(config: RunConfig) -> Run:
    """Prepare a run of ``config`` and start training it in a worker thread."""
    return Run.new(config).start()
