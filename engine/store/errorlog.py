"""Where the traceback of a bug goes, so that a person sees one line and a report has the rest.

An error torchdeck did not foresee (any exception that is not a TorchdeckError) is a bug. The
front ends print one line naming the exception and this file; the traceback is kept in
``RUN_DIR/error.log`` when a run failed while training, else in a file named by the time under
the user's state folder (``$XDG_STATE_HOME/torchdeck/``, by default ``~/.local/state/torchdeck/``).
Every log is written atomically (engine.store.atomic): a link in its place is replaced, never
written through.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from engine.errors import TorchdeckError
from engine.store.atomic import write_atomic
from engine.text import first_line

RUN_LOG = "error.log"


def state_folder() -> Path:
    """torchdeck's folder under the XDG state home (a relative XDG_STATE_HOME is ignored, as the spec says)."""
    home = os.environ.get("XDG_STATE_HOME", "")
    base = Path(home) if os.path.isabs(home) else Path.home() / ".local" / "state"
    return base / "torchdeck"


def save(details: str, run_dir: str | Path | None = None) -> Path:
    """Write ``details`` (a traceback) to ``run_dir``'s error.log, or to a new log in the state
    folder; its path. Raises TorchdeckError when it cannot be written."""
    if run_dir is not None:
        path = Path(run_dir) / RUN_LOG
    else:
        folder = state_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise TorchdeckError(f"cannot create {folder}: {exc.strerror or exc}") from None
        path = folder / f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return write_atomic(path, lambda handle: handle.write(details.encode("utf-8", "backslashreplace")))


def report(error: BaseException, run_dir: str | Path | None = None) -> str:
    """Keep ``error``'s traceback (see :func:`save`) and return the one line that tells of it."""
    details = "".join(traceback.format_exception(error))
    return internal_error(f"{type(error).__name__}: {first_line(error)}", details, run_dir)


def internal_error(summary: str, details: str, run_dir: str | Path | None = None) -> str:
    """The one line for a bug summed up as ``summary`` ("ValueError: ..."), its ``details`` kept in a log."""
    try:
        where = f"the traceback is in {save(details, run_dir)}"
    except TorchdeckError as exc:
        where = f"its traceback could not be kept: {exc}"
    return f"internal error: {summary} ({where}; please report it)"
