"""What the benchmarks share: the median wall time of an action repeated."""

from __future__ import annotations

import statistics
import time


def median_seconds(action, repeats: int) -> float:
    """The median of ``repeats`` timings of ``action()``: one slow outlier (a page-in, a GC) does not move it."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
