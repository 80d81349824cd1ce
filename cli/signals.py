"""What the commands do when a signal arrives: a training run stops cleanly and saves; any other
command that writes (export) unwinds, so its temporary files are removed on the way out.

A signal that was ignored when the process started stays ignored: ``nohup`` ignores SIGHUP so
that the command outlives its terminal, and ``&`` in a script ignores SIGINT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from typing import Iterator

from engine.store.rundir import LAST, resume_command

SIGNALS = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]


def _install(handler) -> dict[int, object]:
    """Install ``handler`` for every signal not ignored at start; the handlers it replaced."""
    return {number: signal.signal(number, handler) for number in SIGNALS
            if signal.getsignal(number) is not signal.SIG_IGN}


def _restore(previous: dict[int, object]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)


class stop_on_signals:
    """Turn SIGINT, SIGTERM and SIGHUP into a clean stop of ``run``; a second signal quits at once.

    A repeat within a second is ignored: Ctrl+C under a wrapper such as ``timeout`` reaches the
    process twice at the same moment.
    """

    REPEAT_AFTER = 1.0

    def __init__(self, run):
        self.run = run
        self.received: list[int] = []
        self.first_at = 0.0
        self.previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received:
            if time.monotonic() - self.first_at < self.REPEAT_AFTER:
                return
            # Checkpoints are written atomically, so quitting now loses nothing already saved.
            if self.run.world.is_main:
                print(f"torchdeck: quitting without waiting; {self._what_is_kept()}", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        self.received.append(signum)
        self.first_at = time.monotonic()
        self.run.control.stop(f"received {signal.Signals(signum).name}")

    def _what_is_kept(self) -> str:
        if (self.run.run_dir / LAST).exists():
            return f"resume with: {resume_command(self.run.run_dir)}"
        return "no checkpoint was written yet, so there is nothing to resume"

    def __enter__(self) -> list[int]:
        self.previous = _install(self._handle)
        return self.received

    def __exit__(self, *exc) -> None:
        _restore(self.previous)


@contextlib.contextmanager
def unwind_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the command by unwinding (exit 128 + the signal's number),
    so the ``finally`` blocks that remove temporary files run; the default action of SIGTERM
    and SIGHUP would end the process on the spot and leave them behind."""

    def unwind(signum, frame):
        raise SystemExit(128 + signum)

    previous = _install(unwind)
    try:
        yield
    finally:
        _restore(previous)
