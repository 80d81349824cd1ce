"""Runs side by side: the options that differ between them, their best and test metrics, their
durations and their curves, ordered best first.

Read from config.toml and events.jsonl alone (``engine.store.runs.summary``), never a
checkpoint, so comparing runs of large models stays as quick as listing them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable

from engine.config import HIGHER_IS_BETTER
from engine.errors import CheckpointError
from engine.events import BatchProgress, EpochEnded
from engine.store import runs
from engine.store.rundir import read_events

SAME_FOR_ALL = {"name", "out"}  # where a run was written, not how it trained


def compare(run_dirs: Iterable[str | Path]) -> dict[str, Any]:
    """The comparison of ``run_dirs`` (run directories; at least one).

    Keys: ``differing``, the config options whose values are not the same in every run (a run
    name and output folder never count; sorted); ``monitor``, the monitored metric when all
    runs share it, else None; ``higher_is_better`` for it; ``runs``, one entry per run, best
    first (runs with no best epoch last, in the order given): its :func:`runs.summary`
    (path, name, task, model, status, best, test, seconds, started, config...) plus
    ``options`` (its values of the differing options) and ``history`` (one row per epoch:
    epoch, train_loss, val_loss, metrics, lr; a resumed run's later epochs replace earlier
    ones of the same number). A path that is not a run directory raises CheckpointError.
    """
    summaries = [_summary(Path(path)) for path in run_dirs]
    if not summaries:
        raise CheckpointError("compare needs at least one run directory")
    differing = differing_options([run["config"] for run in summaries])
    monitors = {run["best"].get("monitor") for run in summaries if run["best"]}
    monitor = monitors.pop() if len(monitors) == 1 else None
    for run in summaries:
        run["options"] = {key: run["config"].get(key) for key in differing}
        run["history"] = history(run["path"])
    ordered = sorted(summaries, key=rank)
    return {"differing": differing, "monitor": monitor, "higher_is_better": _higher(monitor),
            "runs": ordered}


def differing_options(configs: list[dict[str, Any]]) -> list[str]:
    """The keys (sorted) whose values are not the same in every config; a key one config lacks differs."""
    keys = set().union(*configs) - SAME_FOR_ALL
    missing = object()
    return sorted(key for key in keys
                  if any(config.get(key, missing) != configs[0].get(key, missing) for config in configs[1:]))


def history(run_dir: str | Path) -> list[dict[str, Any]]:
    """One row per epoch from events.jsonl, by epoch number: a resumed branch's epoch replaces
    the one it re-ran, as the checkpoint's history does."""
    rows: dict[int, dict[str, Any]] = {}
    for record in read_events(run_dir, skip=(BatchProgress.name,)):
        if record.get("event") == EpochEnded.name:
            rows[record["epoch"]] = {key: record[key] for key in ("epoch", "train_loss", "val_loss", "metrics", "lr")}
    return [rows[epoch] for epoch in sorted(rows)]


def _summary(path: Path) -> dict[str, Any]:
    found = runs.summary(path) if path.is_dir() else None
    if found is None:
        raise CheckpointError(f"{path} is not a torchdeck run directory (it holds no readable config.toml)")
    return found


def _higher(monitor: str | None) -> bool:
    return monitor in HIGHER_IS_BETTER


def rank(run: dict[str, Any]) -> tuple[int, float]:
    """The sort key of a run summary, best first by its own monitor; runs without a (finite) best
    value go last (a stable sort keeps their order)."""
    value = run["best"].get("value")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return (1, 0.0)
    return (0, -value if _higher(run["best"].get("monitor")) else value)
