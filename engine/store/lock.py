"""The lock on a run directory: whether a process on this machine is training (or deleting) it.

A process that trains a run holds an exclusive ``flock`` on the run directory's ``.lock`` file
for the run's whole life; the system drops it when the process ends however it ends (a kill -9
too), so a held lock means a live owner, and a free one means none, whatever pid ``events.jsonl``
recorded (a pid is reused, and a run directory copied from elsewhere names any). A second
resume and a delete take the same lock and are refused while it is held. The file is only ever
opened, never written or followed through a link: a run directory from others may hold anything.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
import weakref
from pathlib import Path

from engine.errors import CheckpointError, ConfigError
from engine.events import BatchProgress
from engine.store.rundir import read_events

LOCK = ".lock"
_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never a link; a planted fifo cannot block
_RETRIES = (0.0, 0.01, 0.05)  # seconds: a probe holds the lock shared for a moment; wait that out
_HELD: "weakref.WeakSet[RunLock]" = weakref.WeakSet()


class RunLock:
    """An exclusive hold on ``run_dir`` until :meth:`release` (or the process ends).

    ``before`` finishes the refusal: "stop it before resuming it". The file is opened for
    writing, though never written, because NFS emulates an exclusive flock with a write lock.
    """

    def __init__(self, run_dir: str | Path, before: str = "resuming it") -> None:
        self.run_dir = Path(run_dir)
        self._fd: int | None = None
        try:
            self._fd = os.open(self.run_dir / LOCK, os.O_RDWR | os.O_CREAT | _OPEN, 0o644)
        except OSError as exc:
            raise CheckpointError(f"cannot lock the run directory {self.run_dir}: {exc.strerror}") from None
        if not _flock(self._fd, fcntl.LOCK_EX):
            self.release()
            raise _refusal(self.run_dir, before)
        _HELD.add(self)

    def release(self) -> None:
        """Let the run directory go; calling it again does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor of its open file drops the flock

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def __del__(self) -> None:  # a run dropped unstarted lets its directory go
        self.release()


def _close_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the held locks, so that a lock
    ends with the process that took it, not with the last of its children."""
    for held in list(_HELD):
        held.release()  # a close, not an unlock: the parent's descriptor keeps the lock


os.register_at_fork(after_in_child=_close_in_child)


def locked(run_dir: str | Path) -> bool:
    """Whether a process holds ``run_dir``'s lock (this one included: a flock belongs to an open
    file, so a probe through a descriptor of its own sees a run trained in this process too)."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | _OPEN)
    except OSError:  # no lock file: no process ever locked it (or a link, which no run holds)
        return False
    try:
        return not _flock(fd, fcntl.LOCK_SH, retries=(0.0,))
    finally:
        os.close(fd)


def refuse_if_locked(run_dir: str | Path, before: str = "resuming it") -> None:
    """Refuse as :class:`RunLock` would while the lock is held, without taking it: for a caller
    that must ask before it looks further (a resume, before asking the run for a checkpoint)."""
    if locked(run_dir):
        raise _refusal(Path(run_dir), before)


def _refusal(run_dir: Path, before: str) -> ConfigError:
    return ConfigError(f"the run in {run_dir} is still training{_process(run_dir)}; stop it before {before}")


def _flock(fd: int, kind: int, retries: tuple[float, ...] = _RETRIES) -> bool:
    """Take ``kind`` of lock on ``fd`` without blocking; False while another open file holds it."""
    for pause in retries:
        time.sleep(pause)
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            continue
    return False


def _process(run_dir: Path) -> str:
    """" (process N)" after the last start recorded on this machine, for information only."""
    starts = [r for r in read_events(run_dir, skip=(BatchProgress.name,)) if r.get("event") == "run_started"]
    if starts and starts[-1].get("host") == socket.gethostname() and isinstance(starts[-1].get("pid"), int):
        return f" (process {starts[-1]['pid']})"
    return ""
