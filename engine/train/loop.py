"""The training loop of one process, top to bottom, calling its policies by name.

Each epoch draws its batch order and trains batch by batch; before and after every batch the
sync policy (one process, or a job's agreement) says whether to stop, to report progress or to
write a checkpoint, and whether a loss became NaN or infinite. At an epoch's end the loop
validates, steps the scheduler, records the epoch, hands the snapshot to the checkpointer and
asks early stopping whether to go on. At the end it writes the snapshots still waiting and
tests the best epoch's weights.

Several processes: each trains a DDP-wrapped copy of the model on its slice of every global
batch (the same permutation on every process), its loss scaled so that DDP's gradient average
is the gradient of the global batch's mean loss: the job follows the one-process trajectory up
to the order of float sums (dropout masks differ). Validation and test splits are evaluated in
contiguous shards whose outputs every process gathers, so all compute the same metrics.
"""

from __future__ import annotations

import copy
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from engine.events import (
    BatchProgress,
    EpochEnded,
    Event,
    Message,
    RunFinished,
    RunStopped,
)
from engine.store import rundir
from engine.train.checkpointer import Checkpointer
from engine.train.control import Control
from engine.train.metrics import compute
from engine.train.optim import SCHEDULERS
from engine.train.prepare import Parts
from engine.train.sync import Decision, JobSync, Solo


class Diverged(Exception):
    """The loss became NaN or infinite."""


class StoppedTesting(Exception):
    """A stop was asked for during the test evaluation at the end of a run."""


@dataclass
class Cursor:
    """Where the loop is in the current epoch."""

    epoch: int  # counted from 0
    first: int  # the first batch of this (re)start of the epoch
    started: float  # perf_counter() at the epoch's start, less the time it trained before a resume
    order: torch.Tensor  # the epoch's permutation of the training samples
    losses: torch.Tensor  # per batch: this process's summed loss
    batches: int  # batches an epoch
    size: int  # samples trained on an epoch
    carried_loss: float  # summed loss of the batches trained before a resume
    carried_seconds: float  # and the time they took

    def decision(self, end: int) -> Decision:
        """This process's summed loss of the batches ``first`` .. ``end - 1``, and the first of them
        whose loss is not finite."""
        window = self.losses[self.first:end]
        if bool(torch.isfinite(window).all()):
            return Decision(float(window.sum()))
        bad = self.first + int((~torch.isfinite(window)).nonzero()[0])
        return Decision(float(window.sum()), (bad, float(self.losses[bad])))

    def position(self, index: int, loss_sum: float) -> dict[str, float]:
        """The train state's place before batch ``index``; ``loss_sum``: the summed loss of this
        epoch's batches since the run (re)started it."""
        return dict(batch=index, partial_loss=self.carried_loss + loss_sum,
                    partial_seconds=time.perf_counter() - self.started)


class Loop:
    """Trains a run's parts from where its train state is to its last epoch, and tests them."""

    def __init__(self, parts: Parts, run_dir: Path, emit: Callable[[Event], None], control: Control,
                 batch_events_every: float) -> None:
        self.parts, self.run_dir, self.emit, self.control = parts, run_dir, emit, control
        config, world = parts.config, parts.world
        self.checkpointer = Checkpointer(parts, run_dir, emit)
        self.sync = (JobSync(world, control, self.checkpointer, batch_events_every) if world.distributed
                     else Solo(control, self.checkpointer, emit, batch_events_every))
        # Training goes through DDP (which also puts the same weights on every process) and, with
        # ``compile``, torch.compile; evaluation and checkpoints use the plain module.
        self.forward = torch.compile(parts.model) if config.compile else parts.model
        self.train_forward = self.forward
        if world.distributed:
            self.train_forward = world.wrap(parts.model, parts.device)
            if config.compile:
                self.train_forward = torch.compile(self.train_forward)
        self.part = (world.rank, world.size) if world.distributed else None  # this process's slice of a batch
        self.stopped_early = parts.early_stopped

    def run(self) -> None:
        """Train every epoch left, unless stopped; then test the best epoch's weights."""
        state, config = self.parts.state, self.parts.config
        self._warn_left_over()
        for epoch in range(state.epoch, config.epochs):
            if self.stopped_early:
                break
            cursor = self._begin_epoch(epoch)
            for index, (inputs, targets) in self._batches(cursor):
                if stop := self.sync.stop_before(cursor, index):
                    self._stop(cursor, index, stop)
                    return
                self._step(cursor, index, inputs, targets)
                if decision := self.sync.after_batch(cursor, index):
                    self._act(cursor, index, decision)
            self._end_epoch(cursor)
        self._finish()

    def _begin_epoch(self, epoch: int) -> Cursor:
        parts, state = self.parts, self.parts.state
        train, batches = parts.data.splits["train"], parts.batches()
        order = parts.shuffle.permutation(len(train), resuming=state.batch > 0).to(parts.device)
        cursor = Cursor(epoch=epoch, first=state.batch, started=time.perf_counter() - state.partial_seconds,
                        order=order, losses=torch.zeros(batches, device=parts.device), batches=batches,
                        size=min(batches * parts.config.batch_size, len(train)),
                        carried_loss=state.partial_loss, carried_seconds=state.partial_seconds)
        self.sync.begin_epoch(cursor)
        if not parts.model.training:  # evaluations put it back as they found it; a toggle costs a tiny epoch
            parts.model.train()
        return cursor

    def _batches(self, cursor: Cursor) -> Iterator[tuple[int, tuple[torch.Tensor, torch.Tensor]]]:
        """(index, (inputs, targets)) of the epoch's batches from ``cursor.first`` on."""
        train, batch_size = self.parts.data.splits["train"], self.parts.config.batch_size
        return zip(range(cursor.first, cursor.batches),
                   train.batches(cursor.order, batch_size, cursor.first, cursor.batches, self.part))

    def _step(self, cursor: Cursor, index: int, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        parts = self.parts
        if parts.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            loss = parts.loss_fn(self.train_forward(inputs), targets)
        parts.optimizer.zero_grad(set_to_none=True)
        if self.part:  # DDP averages the processes' gradients: weigh each by its share of the global batch
            batch_size, samples = parts.config.batch_size, len(parts.data.splits["train"])
            (loss * (len(targets) * self.part[1] / min(batch_size, samples - index * batch_size))).backward()
        else:
            loss.backward()
        parts.optimizer.step()
        cursor.losses[index] = loss.detach() * len(targets)
        parts.state.step += 1

    def _act(self, cursor: Cursor, index: int, decision: Decision) -> None:
        """Fail, report and save between batches, as the sync policy decided."""
        if decision.bad:
            self._diverged(cursor.epoch, *decision.bad)
        if decision.report:
            self._report_batch(cursor, index, decision.loss_sum)
        if decision.save:
            self.checkpointer.save(cursor.position(index + 1, decision.loss_sum))

    def _stop(self, cursor: Cursor, index: int, decision: Decision) -> None:
        """End the run before batch ``index``, saving its place; in a job every process stops
        at the same batch."""
        if decision.bad:
            self._diverged(cursor.epoch, *decision.bad)
        parts = self.parts
        vars(parts.state).update(cursor.position(index, decision.loss_sum))
        parts.shuffle.rewind()  # a resume at batch 0 must draw this epoch's permutation again
        self.checkpointer.save()
        self._stopped(cursor.epoch + 1, index)

    def _stopped(self, epoch: int, batch: int) -> None:
        """Report the stop of a run whose place is saved: ``batch`` batches into ``epoch`` (from 1)."""
        world = self.parts.world
        resume = rundir.resume_command(self.run_dir)
        if world.distributed and world.local_size == world.size:
            resume += f" --nproc {world.size}"
        self.emit(RunStopped(
            run_dir=str(self.run_dir), reason=self.control.stop_reason or "another process of the job was stopped",
            epoch=epoch, batch=batch, checkpoint=str(self.run_dir / rundir.LAST), resume_command=resume,
        ))

    def _end_epoch(self, cursor: Cursor) -> None:
        """Validate, schedule, record and checkpoint one epoch, and decide on early stopping."""
        parts, state, config = self.parts, self.parts.state, self.parts.config
        total = cursor.carried_loss + self.sync.epoch_loss(cursor)
        if not math.isfinite(total) and (bad := cursor.decision(cursor.batches).bad):
            self._diverged(cursor.epoch, *bad)  # names the batch
        state.batch, state.partial_loss, state.partial_seconds = 0, 0.0, 0.0
        train_loss, seconds = total / cursor.size, time.perf_counter() - cursor.started
        val_loss, metrics = self.evaluate("val")
        if not math.isfinite(val_loss):
            raise Diverged(
                f"the validation loss became {val_loss} at epoch {cursor.epoch + 1} (learning rate {self._lr():g}): "
                f"training diverged; try a lower --lr."
            )
        lr = self._lr()
        if parts.scheduler is not None:
            if SCHEDULERS[config.scheduler].needs_metric:
                parts.scheduler.step(val_loss)
            else:
                parts.scheduler.step()
        value = val_loss if parts.stopping.monitor == "val_loss" else metrics[parts.stopping.monitor]
        improved, stop, reason = parts.stopping.update(cursor.epoch + 1, value, val_loss)
        state.epoch = cursor.epoch + 1
        record = dict(epoch=state.epoch, train_loss=train_loss, val_loss=val_loss, metrics=metrics, lr=lr,
                      seconds=seconds, samples=cursor.size)
        state.history.append(record)
        vars(state).update(parts.stopping.state_dict())
        self.checkpointer.snapshot_epoch(improved)  # before listeners can touch anything
        self.emit(EpochEnded(**record, epochs=config.epochs, improved=improved))
        if self.checkpointer.due():
            self.checkpointer.write()
        if stop and state.epoch < config.epochs:
            self.emit(Message(reason))
            self.stopped_early = True

    def _finish(self) -> None:
        """Test the best epoch's weights and save the scores with the last checkpoint.

        The snapshots still waiting are written first, so a test evaluation that is long, stopped
        or killed costs no epoch: resuming then runs only the evaluation. One process stops
        before any chunk of it; a job's processes evaluate together and go through.
        """
        self.checkpointer.write()
        best_model = copy.deepcopy(self.parts.model)  # not a fresh build: that would draw from the RNG
        best_model.load_state_dict(self.checkpointer.best_model_weights())
        if not self.parts.world.distributed:
            best_model.register_forward_pre_hook(self._stop_testing)
        try:
            test_loss, test_metrics = self.evaluate("test", best_model)
        except StoppedTesting:
            self._stopped(self.parts.state.epoch, self.parts.batches())
            return
        test = {"loss": test_loss, **test_metrics}
        self.checkpointer.save(test=test)
        state = self.parts.state
        self.emit(RunFinished(
            run_dir=str(self.run_dir), reason="early_stopping" if self.stopped_early else "completed",
            epochs_done=state.epoch, best=dict(state.best), test=test,
            seconds=sum(row["seconds"] for row in state.history),
        ))

    def _stop_testing(self, module: torch.nn.Module, inputs: tuple) -> None:
        if self.control.stop_requested:
            raise StoppedTesting

    @torch.no_grad()
    def evaluate(self, split: str, model: torch.nn.Module | None = None) -> tuple[float, dict[str, float]]:
        """(mean loss, metrics) of ``model`` (default: the run's) on a split. In a job each process
        computes the outputs of its share of the split, and every process gets all of them."""
        parts = self.parts
        data = parts.data.splits[split]
        parts.world.share_buffers(model or parts.model)
        with self._autocast():
            outputs = data.outputs(model or self.forward, self.part)
        outputs = parts.world.concat(outputs.float(), len(data))
        loss = float(parts.loss_fn(outputs, data.y))
        return loss, compute(parts.kind, outputs, data.y, parts.data.meta)

    def _autocast(self):
        """bfloat16 autocast with ``amp`` (no loss scaling needed, unlike float16), else nothing."""
        if self.parts.config.amp:
            return torch.autocast(self.parts.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _report_batch(self, cursor: Cursor, index: int, loss_sum: float) -> None:
        batch_size = self.parts.config.batch_size
        done = min((index + 1) * batch_size, cursor.size)
        loss = (cursor.carried_loss + loss_sum) / done
        elapsed = max(time.perf_counter() - cursor.started, 1e-9)
        rate = (done - cursor.first * batch_size) / max(elapsed - cursor.carried_seconds, 1e-9)
        self.emit(BatchProgress(
            epoch=cursor.epoch + 1, epochs=self.parts.config.epochs, batch=index + 1, batches=cursor.batches,
            step=self.parts.state.step, loss=loss, samples_per_s=rate, eta_s=(cursor.size - done) / max(rate, 1e-9),
        ))

    def _warn_left_over(self) -> None:
        if left := self.parts.left_over():
            why = ("batch norm needs 2 samples per batch" if not self.part else
                   f"the last batch would not give each of the {self.parts.world.size} processes its share")
            which = "one left-over sample (a different one" if left == 1 else f"{left} left-over samples (different ones"
            self.emit(Message(f"{why}: each epoch skips its {which} each time)", level="warning"))

    def _diverged(self, epoch: int, batch: int, value: float) -> None:
        done = self.parts.state.epoch
        kept = f"last.pt and best.pt hold epoch {done}" if done else "no checkpoint was written"
        raise Diverged(
            f"the loss became {value} at epoch {epoch + 1}, batch {batch + 1} "
            f"(learning rate {self._lr():g}): training diverged; try a lower --lr ({kept})"
        )

    def _lr(self) -> float:
        return float(self.parts.optimizer.param_groups[0]["lr"])
