"""RunThread: the one thread that prepares a run and then trains it.

Torch runs its CPU kernels on an OpenMP team per thread that calls into it. When the caller's
thread prepared the data and built the model and another thread trained, the process held two
teams on the same cores; in one in-process comparison on 2 cores the MNIST MLP trained 3 % slower
that way than when one thread did both (within this machine's noise, but never faster). Here
one thread does both: a caller gets the preparation's result (or its exception) as if it had
run it itself.
"""

from __future__ import annotations

import queue
import threading
import weakref
from concurrent.futures import Future
from typing import Any, Callable


class RunThread:
    """A daemon thread that runs ``call``s in order, then one ``start``ed job, and ends.

    ``owner``: the object whose collection lets a thread that was never started end, so an
    abandoned run leaves no thread behind.
    """

    def __init__(self, name: str, owner: object) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=_serve, args=(self._jobs,), name=name, daemon=True)
        self.thread.start()
        weakref.finalize(owner, self._jobs.put, None)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in the thread; its result, or its exception raised here."""
        done: Future = Future()
        self._jobs.put((function, args, done))
        return done.result()

    def start(self, function: Callable[[], None]) -> threading.Thread:
        """Run ``function`` in the thread, which ends with it; the thread."""
        self._jobs.put((function, (), None))
        return self.thread


def _serve(jobs: queue.SimpleQueue) -> None:
    while (job := jobs.get()) is not None:
        function, args, done = job
        if done is None:
            function(*args)
            return
        try:
            done.set_result(function(*args))
        except BaseException as exc:  # handed to the caller, who raises it
            done.set_exception(exc)
