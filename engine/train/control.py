"""Pause, resume and stop a run from another thread; the loop checks between batches."""

from __future__ import annotations

import threading


class Control:
    """Thread-safe switches the training loop obeys at the next batch boundary."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self.stop_reason = ""

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self, reason: str = "stopped by the user") -> None:
        """Ask the run to save its state and end after the current batch."""
        if not self._stop.is_set():
            self.stop_reason = reason
        self._stop.set()
        self._running.set()  # a paused run must wake up to stop

    def wait_while_paused(self) -> None:
        self._running.wait()
