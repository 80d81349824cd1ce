"""How the TUI runs blocking work (folder scans, data loading, engine calls) without freezing.

Every such job is a screen's method decorated with :func:`in_thread`: Textual's ``@work`` in a
thread, one job at a time per group. The job hands its outcome back with :func:`answer`, which
calls a method of the screen on the app's thread, the only thread that touches widgets. Starting
a job cancels the older one of its group and closing a screen cancels its jobs; ``answer`` drops
the outcome of a cancelled job, so a slow answer never overwrites a newer one or reaches a
closed screen. An exception that escapes a job, bad input or a bug alike, ends its worker in
the ERROR state; the screen's ``on_worker_state_changed`` shows :func:`failure`'s one line where
that screen shows problems, and the app keeps running.
"""

from __future__ import annotations

from typing import Any, Callable

from textual import work
from textual.worker import Worker, WorkerState, get_current_worker

from engine.errors import TorchdeckError
from engine.store import errorlog


def in_thread(group: str):
    """``@work`` as every job of the TUI runs: in a thread, exclusive in ``group``, and a failure
    reported to the screen rather than closing the app."""
    return work(thread=True, exclusive=True, group=group, exit_on_error=False)


def answer(handler: Callable[..., Any], *args: Any) -> None:
    """From inside a job: call ``handler(*args)`` on the app's thread, unless the job was cancelled.

    The check runs on the app's thread too, where cancelling happens, so it cannot go stale.
    """
    worker = get_current_worker()

    def deliver() -> None:
        if not worker.is_cancelled:
            handler(*args)

    worker.node.app.call_from_thread(deliver)


def failure(event: Worker.StateChanged) -> str | None:
    """The line to show when ``event`` says a job failed, else None: an engine error's own
    message (written for the user), or a bug's type and first line with where its traceback was kept."""
    if event.state != WorkerState.ERROR:
        return None
    error = event.worker.error
    if isinstance(error, TorchdeckError):
        return str(error)
    return errorlog.report(error)
