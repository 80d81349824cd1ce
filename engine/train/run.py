"""A training run: prepared and trained in a thread of its own (``run.worker``, a RunThread).

``Run.new(config)`` or ``Run.resume(path)`` does everything that can fail because of the user's
input (checking the device, loading data, reading a checkpoint, creating the run directory)
before it returns, raising those errors in the caller, so a front end can report them as bad
input. ``start()`` then runs the plain PyTorch loop (``engine/train/loop.py``) in the same
thread; the loop reports through ``run.events`` and obeys ``run.control`` between batches.
``wait()`` returns the terminal event, which ``run.result`` keeps.

A run stopped at any batch and resumed ends with the same weights as one that was never
interrupted (on the CPU): see ``prepare.py`` for the RNG states and ``checkpointer.py`` for
when checkpoints are written. Several processes (``torchdeck train --nproc N``, or torchrun)
train one run together: every process builds its own ``Run`` with its ``World``; only rank 0
writes the run directory and reports.
"""

from __future__ import annotations

import os
import socket
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from engine.config import RunConfig
from engine.data.split import TaskData
from engine.device import device_name
from engine.errors import TorchdeckError
from engine.events import Event, EventStream, Message, RunFailed, RunStarted
from engine.store import checkpoint, rundir, tblog, trust
from engine.store.checkpoint import TrainState
from engine.store.lock import RunLock
from engine.train.control import Control
from engine.train.distributed import PeerFailed, World
from engine.train.loop import Diverged, Loop
from engine.train.metrics import metric_names
from engine.train.models import count_parameters
from engine.train.prepare import Parts, load_for_resume, resumed_config
from engine.train.runthread import RunThread

TINY_STEP = 2**22  # parameters x batch size below which a step runs on one CPU thread (see Run._threads)
BATCH_EVENTS_EVERY = 0.1  # seconds between batch events (an epoch event tells that an epoch is complete)


class Run:
    """One training run, its thread (``worker``: it prepares the run, then trains it) and the
    stream of its events.

    Besides ``events``, ``control`` and ``result``, a run shows what front ends read: its
    ``run_dir``, ``config``, ``device``, ``world``, ``data`` and train ``state``, and in
    ``parts`` everything it trains with (model, loss, optimizer, scheduler). On rank 0, ``lock``
    holds the run directory (``engine.store.lock``) from its creation, or from the start of a
    resume, until the terminal event is recorded; a run that fails to prepare lets it go too.
    """

    def __init__(self, config: RunConfig, *, saved: dict[str, Any] | None = None, run_dir: Path | None = None,
                 lock: RunLock | None = None, resumed_from: str | None = None, world: World | None = None,
                 batch_events_every: float = BATCH_EVENTS_EVERY):
        self.lock = lock
        try:
            self.world = world = world or World.single()
            world.setup()
            self.worker = RunThread("torchdeck-run", self)  # prepares and trains: one OpenMP team
            with world.together():  # a failure on one rank (say, rank 0's run directory) fails them all
                self.parts = self.worker.call(Parts.build, config, world, saved)
                if world.is_main and run_dir is None:
                    run_dir = rundir.create(config.out, config.name or rundir.default_name(config.task, config.model))
                    self.lock = RunLock(run_dir)
            self.run_dir = Path(world.broadcast(str(run_dir)))
            self.resumed_from = resumed_from
            self.events = EventStream()
            self.control = Control()
            self._loop = Loop(self.parts, self.run_dir, self._emit, self.control, batch_events_every)
            self.lost_peer = False  # the run failed because another process of its job did
            self.thread: threading.Thread | None = None
            self.result: Event | None = None
            if world.is_main:
                writer = rundir.RunWriter(self.run_dir, metric_names(self.parts.kind))
                writer.write_config(self.config.to_toml())
                writer.rewrite_metrics(self.state.history)
                self.events.subscribe(writer)
                if self.config.log == "tensorboard":
                    self.events.subscribe(tblog.TensorBoardLog(self.run_dir, self.config, self.state.step))
                self.events.subscribe(lambda event: event.terminal and self._release())  # once it is written
        except BaseException:
            self._release()
            raise

    @classmethod
    def new(cls, config: RunConfig, world: World | None = None, *,
            batch_events_every: float = BATCH_EVENTS_EVERY) -> "Run":
        """A new run of ``config``; ``world``: the job it is one process of (default: the one
        torchrun describes in the environment, or none). ``batch_events_every``: seconds between
        batch events (0: one after every batch)."""
        if config.data_dir:  # recorded absolute, so later commands find the data from any folder
            config = config.replace(data_dir=str(Path(config.data_dir).expanduser().resolve()))
        config = trust.pin(config)  # the user's own code: its hash recorded, trusted from now on
        return cls(config, world=world or World.from_env(), batch_events_every=batch_events_every)

    @classmethod
    def resume(cls, path: str | Path, world: World | None = None, *, code: tuple[str | Path, ...] = (),
               batch_events_every: float = BATCH_EVENTS_EVERY, **changes: Any) -> "Run":
        """Continue the run saved at ``path`` (a run directory or a ``.pt`` file).

        Only ``epochs`` (to train further), ``device``, ``patience``, ``min_delta``,
        ``save_every``, ``amp``, ``compile`` and ``log`` may change; everything else is the checkpoint's
        own config. A run directory continues in itself; a loose ``.pt`` file goes to ``out``
        (default ``checkpoints``), never where its saved config says. In a job of several
        processes rank 0 reads the checkpoint and hands it to the others, whatever the job's size
        was before. A run of the user's own code imports it again only as engine.store.trust
        allows; ``code``: files the user says hold that code now (``--code``).
        """
        world = world or World.from_env()
        world.setup()
        found = lock = None
        try:
            with world.together():
                if world.is_main:
                    *found, lock = load_for_resume(path)  # rank 0 holds the run directory from here on
            saved, ckpt_path, run_dir = world.broadcast(found)
            config, run_dir = resumed_config(saved, ckpt_path, run_dir, changes)
            config = trust.admit(config, code)
            if run_dir is None and lock is not None:  # a branch: its new directory is locked instead
                lock.release()
                lock = None
            return cls(config, saved=saved, run_dir=run_dir, lock=lock, resumed_from=str(ckpt_path), world=world,
                       batch_events_every=batch_events_every)
        except BaseException:
            if lock is not None:
                lock.release()
            raise

    @property
    def config(self) -> RunConfig:
        return self.parts.config

    @property
    def device(self) -> torch.device:
        return self.parts.device

    @property
    def data(self) -> TaskData:
        return self.parts.data

    @property
    def state(self) -> TrainState:
        return self.parts.state

    # --- running ------------------------------------------------------------------------

    def start(self) -> "Run":
        self.events.producer = self.worker.thread
        self.thread = self.worker.start(self._main)
        return self

    def wait(self) -> Event | None:
        """Block until the run ends; the terminal event (finished, stopped or failed)."""
        if self.thread is not None:
            self.thread.join()
        return self.result

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
                self._loop.run()
        except (Diverged, TorchdeckError) as exc:
            self.lost_peer = isinstance(exc, PeerFailed)
            self._fail(str(exc))
        except Exception as exc:  # an engine bug or a runtime error (out of memory, disk full, a lost peer)
            lost = self.world.lost(exc)
            self.lost_peer = lost is not None
            self._fail(lost or f"{type(exc).__name__}: {exc}", "" if lost else traceback.format_exc())
        finally:
            self.data.close()  # its DataLoader workers stop now, not whenever the run is collected
            self._release()

    def _release(self) -> None:
        """Let the run directory go: the run has ended (or never will), so it may be resumed or deleted."""
        if self.lock is not None:
            self.lock.release()

    @contextmanager
    def _threads(self):
        """One intra-op thread for a tiny model on the CPU, for the length of the run.

        Its operations are too small to split, yet from a thread other than the main one each of
        them pays for waking the OpenMP team, which costs a tiny model more than the threads give
        back (the hand-written Iris loop of bench/loops.py does the same). Models with real matrix
        products keep every thread: they lose speed with one.
        """
        before = torch.get_num_threads()
        tiny = count_parameters(self.parts.model) * self.config.batch_size < TINY_STEP
        if tiny and self.device.type == "cpu" and not self.world.distributed:
            torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def _fail(self, message: str, details: str = "") -> None:
        """Write the snapshots still waiting (all taken before the failure), then report it."""
        try:
            self._loop.checkpointer.write()
        except Exception as exc:  # the disk is full too: the first failure is the one to report
            message += f" (and the last snapshot could not be written: {exc})"
        self._emit(RunFailed(message=message, run_dir=str(self.run_dir), details=details))

    def _started(self) -> RunStarted:
        return RunStarted(
            run_dir=str(self.run_dir),
            config=self.config.to_dict(),
            device=str(self.device),
            device_name=device_name(self.device),
            parameters=count_parameters(self.parts.model),
            sizes=self.data.sizes(),
            epochs=self.config.epochs,
            batches=self.parts.batches(),
            start_epoch=self.state.epoch,
            resumed_from=self.resumed_from,
            pid=os.getpid(),
            host=socket.gethostname(),
            versions=checkpoint.versions(),
            world_size=self.world.size,
        )


def start(config: RunConfig) -> Run:
    """Prepare a run of ``config`` and start training it in a worker thread."""
    return Run.new(config).start()
