"""When a run writes its checkpoints, and what they hold.

Every epoch end takes a snapshot (a CPU copy of the weights, optimizer and RNG states, so that
training goes on while it waits); ``last.pt`` and, when the epoch improved, ``best.pt`` are
written from the waiting snapshots once ``save_every`` seconds have passed since the last write
(also between the batches of a long epoch), and always before the final test evaluation and
when the run stops, fails or ends.
Writing at every epoch end can cost a short run as much as its training; this way a kill -9
loses at most ``save_every`` seconds of work, and a diverged run still leaves the last good
snapshot on disk. In a job only rank 0 writes; its checkpoints hold every rank's RNG state.

A run resumed from the end of its best epoch keeps its checkpoint's weights as the best and
writes best.pt again from them: a run resumed into a new directory (a branch from best.pt, a
loose ``.pt`` file) has no other, and its directory is complete on its own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from engine.events import CheckpointSaved, Event
from engine.store import checkpoint, rundir
from engine.train.models import count_parameters

if TYPE_CHECKING:
    from engine.train.prepare import Parts


class Checkpointer:
    """Snapshots waiting to be written, the ``save_every`` clock, and the best epoch's weights."""

    def __init__(self, parts: "Parts", run_dir: Path, emit: Callable[[Event], None]) -> None:
        self.parts, self.run_dir, self.emit = parts, run_dir, emit
        self.pending: dict[str, dict[str, Any] | None] = {}  # rank 0's snapshots, by file name
        self.saved_at = time.monotonic()
        self.best_weights: dict[str, torch.Tensor] | None = None  # of the best epoch this process saw
        self._fixed: dict[str, Any] | None = None  # the parts of every checkpoint that never change
        state = parts.state
        if state.epoch and not state.batch and state.best.get("epoch") == state.epoch:
            self._keep_best(self.snapshot())  # resumed from the end of its best epoch

    def due(self) -> bool:
        return time.monotonic() - self.saved_at >= self.parts.config.save_every

    def due_between_batches(self, index: int, batches: int) -> bool:
        """A checkpoint is due after batch ``index`` of an epoch of ``batches`` (not its last:
        the epoch's end takes its own snapshot)."""
        return bool(self.parts.config.save_every and self.due() and index + 1 < batches)

    def snapshot_epoch(self, improved: bool) -> None:
        """Keep the snapshot of an epoch that just ended as last.pt, and as best.pt when it improved.
        Every process keeps the best weights: every process evaluates the test split."""
        snapshot = self.pending[rundir.LAST] = self.snapshot()
        if improved:
            self._keep_best(snapshot)

    def _keep_best(self, snapshot: dict[str, Any] | None) -> None:
        """``snapshot`` (rank 0's; None elsewhere) is the best epoch's: best.pt, and its weights."""
        self.pending[rundir.BEST] = snapshot
        self.best_weights = snapshot["model"] if snapshot else copied(self.parts.model.state_dict())

    def save(self, position: dict[str, Any] | None = None, **extra: Any) -> None:
        """Write last.pt as of now (with the waiting best.pt first)."""
        self.pending[rundir.LAST] = self.snapshot(position, **extra)
        self.write()

    def write(self) -> None:
        """Write the waiting snapshots, best.pt before last.pt: a last.pt on disk never names a
        best epoch newer than best.pt's. A failed write is not retried. Rank 0 alone writes."""
        pending, self.pending = self.pending, {}
        for name in (rundir.BEST, rundir.LAST):
            if pending.get(name) is not None:
                path = checkpoint.save(pending[name], self.run_dir / name)
                self.emit(CheckpointSaved(path=str(path), kind=name.removesuffix(".pt"), epoch=pending[name]["epoch"]))
        self.saved_at = time.monotonic()

    def best_model_weights(self) -> dict[str, torch.Tensor]:
        """The best epoch's weights; a run resumed in its own directory after its best epoch saw
        that epoch in an earlier process, so then they come from best.pt (read by rank 0, handed
        to every process)."""
        if self.best_weights is not None:
            return self.best_weights
        world = self.parts.world
        return world.broadcast(checkpoint.load(self.run_dir / rundir.BEST)["model"] if world.is_main else None)

    def snapshot(self, position: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any] | None:
        """The checkpoint of this moment, every tensor copied to the CPU. ``position``: a place
        inside the current epoch. In a job every process takes part (rank 0 collects their RNG
        states) and only rank 0 gets the snapshot."""
        world = self.parts.world
        ranks = world.gather(self._rng()) if world.distributed else None
        if not world.is_main:
            return None
        payload = self._payload(position or {}, **extra)
        if ranks:
            payload["rng"]["ranks"] = ranks
        return payload

    def _rng(self) -> dict[str, Any]:
        cuda = self.parts.device.type == "cuda"
        return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else []}

    def _payload(self, position: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A checkpoint's contents; what changes during the run is copied, what does not is
        shared by every snapshot (copying it all can take as long as a short epoch)."""
        parts, state = self.parts, self.parts.state
        if self._fixed is None:
            self._fixed = {
                "magic": checkpoint.MAGIC,
                "format_version": checkpoint.FORMAT_VERSION,
                "config": parts.config.to_dict(),
                "task": parts.data.meta.to_dict(),
                "parameters": count_parameters(parts.model),
                "versions": checkpoint.versions(),
            }
        return {
            **self._fixed,
            "epoch": state.epoch,
            "global_step": state.step,
            # history rows and best are replaced, never changed in place: shallow copies suffice
            "train_state": {**state.to_dict(), "history": list(state.history), "best": dict(state.best), **position},
            **copied({
                "model": parts.model.state_dict(),
                "optimizer": parts.optimizer.state_dict(),
                "scheduler": parts.scheduler.state_dict() if parts.scheduler is not None else {},
                "rng": {**self._rng(), **parts.shuffle.state_dict()},
            }),
            "saved_at": time.time(),
            **extra,
        }


def copied(value: Any) -> Any:
    """``value`` with every tensor in it (nested in dicts and lists) copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: copied(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copied(item) for item in value]
    return value
