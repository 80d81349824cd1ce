"""Files replaced whole or not at all: checkpoints, config.toml, metrics.csv, exports.

A reader (a resumed run, the browser, whoever serves an export) must never meet a torn file, and
a failed write must never cost the previous one. So a file is written under a temporary name in
its own folder, flushed to disk, renamed over the old one (atomic within a folder) and the
folder flushed too. A temporary is named after its process (``.NAME.PID.tmp``): a process killed
mid-write leaves at most that, and :func:`remove_stale` tells such leftovers, whose process is
gone, from a write still in progress.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from engine.errors import CheckpointError


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Replace ``path`` with what ``write`` puts into the open binary file it is given."""
    with staged(path) as temporary:
        with open(temporary, "wb") as handle:
            write(handle)
    return Path(path)


@contextlib.contextmanager
def staged(path: str | Path) -> Iterator[Path]:
    """The temporary path to write ``path``'s new content to; published over ``path`` when the
    block ends normally, removed when it raises.

    For writers that need a file name rather than a handle, or that check the written file
    before it may be kept (an export is loaded back and verified first). An OSError, here or in
    the block, becomes a CheckpointError naming the file, its folder and the system's reason.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)  # a link planted under this name is not written through
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a read-only folder: nothing was created there anyway
            temporary.unlink(missing_ok=True)
        if failed := _os_error(exc):
            kept = f"; the previous {path.name} is intact" if path.exists() else ""
            raise CheckpointError(
                f"cannot write {path.name} in {path.parent}: {failed.strerror or failed}{kept}"
            ) from None
        raise
    _fsync_folder(path.parent)


def _os_error(exc: BaseException) -> OSError | None:
    """The system's error behind a failed write: ``exc`` itself, or the OSError that a library
    reported as its own error (torch's zip writer turns a full disk into a RuntimeError
    ``[enforce fail at inline_container.cc]`` raised while handling the OSError)."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, RuntimeError) and isinstance(exc.__context__, OSError):
        return exc.__context__
    return None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; a system that cannot (some network file systems) is let be."""
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


def remove_stale(folder: Path, prefix: str = "") -> None:
    """Delete the temporaries in ``folder`` that processes now dead left half-written; only
    those of files named ``prefix``... in a folder that is not torchdeck's alone."""
    for temporary in folder.glob(".*.tmp"):
        pid = temporary.name.rsplit(".", 2)[-2]
        dead = pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid))
        if dead and temporary.name.startswith(f".{prefix}"):
            temporary.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs on this machine (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
