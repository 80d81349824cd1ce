"""What the loop decides between batches: stop, report a batch, write a checkpoint, or fail.

In one process (:class:`Solo`) each decision is taken alone, and the running loss is read only
when a report or a checkpoint needs it (reading it waits for the device). A job's processes
(:class:`JobSync`) must take every decision together, at the same batch: a snapshot and a stop
involve them all, and one that diverges fails them all. Exchanging a row after every batch
would cost a collective per step, so they meet at sync points, spaced by rank 0 to come about
every ``every`` seconds, and at the last batch of each epoch; a pause would stall the others,
so only one process pauses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Callable

from engine.events import Event, Message
from engine.train.control import Control

if TYPE_CHECKING:
    from engine.train.checkpointer import Checkpointer
    from engine.train.distributed import World
    from engine.train.loop import Cursor

MAX_SYNC_DISTANCE = 10_000  # batches between two sync points at most


@dataclass
class Decision:
    """What the loop acts on after a batch, or before one when the run stops there."""

    loss_sum: float  # the job's summed loss of this epoch's batches since the run (re)started it
    bad: tuple[int, float] | None = None  # the first batch whose loss is not finite, and that loss
    report: bool = False  # send a batch event
    save: bool = False  # write a checkpoint between batches


@dataclass
class SyncReport:
    """What one process of a job tells the others at a sync point (as one row of floats)."""

    stop: bool  # it was asked to stop
    save: bool  # a checkpoint is due (rank 0's decision counts)
    steps: int  # batches to the next sync point (rank 0's measure counts)
    loss_sum: float  # its summed loss of this epoch's batches since the (re)start
    bad_batch: int  # its first batch whose loss is not finite, or -1
    bad_value: float  # that batch's loss, or 0.0

    def row(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_row(cls, row: list[float]) -> "SyncReport":
        return cls(**{f.name: _KINDS[f.type](value) for f, value in zip(fields(cls), row)})


_KINDS = {"bool": bool, "int": int, "float": float}


class Solo:
    """One process: pauses, stops and reports as its control and clock say."""

    def __init__(self, control: Control, checkpointer: "Checkpointer", emit: Callable[[Event], None],
                 every: float) -> None:
        self.control, self.checkpointer, self.emit, self.every = control, checkpointer, emit, every
        self.next_report = 0.0  # the first batch reports; then one every ``every`` seconds

    def begin_epoch(self, cursor: "Cursor") -> None:
        pass

    def stop_before(self, cursor: "Cursor", index: int) -> Decision | None:
        """A decision to stop before batch ``index`` (after waiting out a pause), or None."""
        control = self.control
        if control.paused and not control.stop_requested:
            self.emit(Message(f"paused at epoch {cursor.epoch + 1}, batch {index + 1}"))
            control.wait_while_paused()
            if not control.stop_requested:
                self.emit(Message("resumed"))
        return cursor.decision(index) if control.stop_requested else None

    def after_batch(self, cursor: "Cursor", index: int) -> Decision | None:
        """A batch event when one is due (an epoch's end is told by its epoch event), a
        checkpoint when one is due; None when neither is."""
        now = time.perf_counter()
        report = now >= self.next_report
        if report:
            self.next_report = now + self.every
        save = self.checkpointer.due_between_batches(index, cursor.batches)
        if not (report or save):
            return None
        return replace(cursor.decision(index + 1), report=report, save=save)

    def epoch_loss(self, cursor: "Cursor") -> float:
        """The summed loss of the epoch's batches since the (re)start."""
        return cursor.decision(cursor.batches).loss_sum


class JobSync:
    """A job's processes: every decision taken together at sync points."""

    def __init__(self, world: "World", control: Control, checkpointer: "Checkpointer", every: float) -> None:
        self.world, self.control, self.checkpointer, self.every = world, control, checkpointer, every
        self.next_report = 0.0
        self.distance = 1  # batches between sync points, as rank 0 last measured it
        self.next_sync = 1
        self.synced = (0, 0.0)  # the batch after the last sync point, and its time
        self.loss_sum = 0.0  # the job's, of this epoch's batches up to the last sync point
        self.stop_agreed = False  # any process was asked to stop: all stop at the next batch

    def begin_epoch(self, cursor: "Cursor") -> None:
        self.loss_sum = 0.0
        self.next_sync, self.synced = cursor.first + self.distance, (cursor.first, time.perf_counter())

    def stop_before(self, cursor: "Cursor", index: int) -> Decision | None:
        return Decision(self.loss_sum) if self.stop_agreed else None

    def after_batch(self, cursor: "Cursor", index: int) -> Decision | None:
        """At a sync point, what every process agreed; None between sync points."""
        last = index == cursor.batches - 1
        if index + 1 < self.next_sync and not last:
            return None
        now = time.perf_counter()
        reports = [SyncReport.from_row(row) for row in self.world.rows(self._report(cursor, index, now).row()).tolist()]
        self.distance = reports[0].steps
        self.next_sync, self.synced = index + 1 + self.distance, (index + 1, now)
        self.stop_agreed = any(report.stop for report in reports)
        self.loss_sum = sum(report.loss_sum for report in reports)
        failed = [report for report in reports if report.bad_batch >= 0]
        worst = min(failed, key=lambda report: report.bad_batch) if failed else None
        report = self.world.is_main and (now >= self.next_report or last)
        if report:
            self.next_report = now + self.every
        return Decision(self.loss_sum, (worst.bad_batch, worst.bad_value) if worst else None,
                        report=report, save=reports[0].save)

    def _report(self, cursor: "Cursor", index: int, now: float) -> SyncReport:
        since, at = self.synced
        steps = max(int(self.every * (index + 1 - since) / max(now - at, 1e-9)), 1)
        own = cursor.decision(index + 1)
        return SyncReport(
            stop=self.control.stop_requested, save=self.checkpointer.due_between_batches(index, cursor.batches),
            steps=min(steps, MAX_SYNC_DISTANCE), loss_sum=own.loss_sum,
            bad_batch=own.bad[0] if own.bad else -1, bad_value=own.bad[1] if own.bad else 0.0,
        )

    def epoch_loss(self, cursor: "Cursor") -> float:
        return self.loss_sum
