"""What state runs are in, read from their run directories: status, summaries, listings, and
which checkpoint a run directory offers (or why it has none yet).

Everything here reads config.toml and events.jsonl alone, never a checkpoint, so that listing a
folder of runs stays fast however large their models are. Whether a run still trains on this
machine is its lock's to say (``engine.store.lock``), not the pid its events recorded.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import stat
from pathlib import Path
from typing import Any, Iterable

from engine import tomlfile
from engine.errors import CheckpointError, ConfigError
from engine.events import (
    TERMINAL_STATUS,
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
    record_misfit,
)
from engine.store.lock import RunLock, locked
from engine.store.rundir import BEST, CONFIG, EVENTS, LAST, read_events, read_no_follow

TAIL = 64 * 1024  # bytes read from the end of events.jsonl for its last record
HEAD = 1024 * 1024  # the most read of its first line (a run_started line holds the whole config)


def locate(path: str | Path, prefer: str = LAST) -> tuple[Path, Path | None]:
    """(checkpoint file, its run directory or None) for a run directory or a ``.pt`` path."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or run directory")
    if path.is_dir():
        for name in (prefer, LAST, BEST):
            if (path / name).is_file():
                return path / name, path
        if (path / EVENTS).is_file():
            raise CheckpointError(f"{path} holds no checkpoint yet: {_why_no_checkpoint(path)}")
        raise CheckpointError(f"{path} is not a torchdeck run directory (it holds no {LAST} or {BEST})")
    run_dir = path.parent if (path.parent / EVENTS).is_file() else None
    return path, run_dir


def _why_no_checkpoint(run_dir: Path) -> str:
    state = status(run_dir)
    if state == "running":
        return "the run is still in its first epoch"
    failures = [r.get("message", "") for r in read_events(run_dir) if r.get("event") == "run_failed"]
    if failures:
        return f"the run {state} before its first epoch ended ({failures[-1]})"
    again = f"; start it again with: torchdeck train --config {shlex.quote(str(run_dir / CONFIG))}" \
        if (run_dir / CONFIG).is_file() else ""
    return f"the run {state} before its first epoch ended (its process was killed or crashed){again}"


def status(run_dir: str | Path) -> str:
    """finished, stopped, failed or running; a run whose process died counts as failed."""
    return _status(read_events(run_dir, skip=(BatchProgress.name,)), run_dir)


def _status(records: Iterable[dict[str, Any]], run_dir: str | Path) -> str:
    """Running while a process holds the run's lock (preparing, training or deleting it).

    Otherwise what the events recorded last, and a run that recorded no end has lost its
    process, unless it was started on another machine, whose locks this one may not see.
    """
    if locked(run_dir):
        return "running"
    state, started = "failed", {}
    for record in records:
        if record.get("event") == "run_started":
            state, started = "running", record
        elif record.get("event") in TERMINAL_STATUS:
            state = TERMINAL_STATUS[record["event"]]
    if state == "running" and started.get("host") == socket.gethostname():
        return "failed"
    return state


def summary(run_dir: str | Path) -> dict[str, Any] | None:
    """What a list of runs shows about one, from config.toml and events.jsonl alone.

    No checkpoint is loaded, so listing a folder stays fast however large the models are. None
    when ``run_dir`` is not a run directory (it holds no readable config.toml). The keys: path,
    name, task, model, epochs_done, epochs (the total), best (monitor, value and epoch; empty
    before the first epoch), status, reason (why it finished or stopped), message (why it
    failed), started (time of its first start), test (the finished run's test metrics, else
    empty), seconds (the training time of its epochs), parameters and config.
    """
    run_dir = Path(run_dir)
    try:  # a regular file only: a FIFO planted there would block a listing, a link lead anywhere
        config = tomlfile.read_toml(run_dir / CONFIG, "run config", follow_links=False)
    except ConfigError:
        return None
    if not {"task", "model", "epochs"} <= config.keys():
        return None
    records = _finished_ends(run_dir) or list(read_events(run_dir, skip=(BatchProgress.name, CheckpointSaved.name)))
    first_start, started, done, best, reason, message = None, {}, 0, {}, "", ""
    test, seconds, total = {}, {}, None  # seconds by epoch: a resumed branch's epoch replaces the one it re-ran
    for record in records:
        event = record.get("event")
        if event == RunStarted.name:
            first_start = first_start or record.get("time")
            started, done, reason, message, test = record, record.get("start_epoch", done), "", "", {}
            total = None
        elif event == EpochEnded.name:
            done, seconds[record["epoch"]] = record["epoch"], record["seconds"]
            if record.get("improved"):
                best = _best_of(record, config.get("monitor", "auto"))
        elif event == RunFinished.name:
            best = record.get("best") or best  # also knows a best epoch that a resumed branch did not record
            reason, test = record.get("reason", ""), record["test"]
            done, total = record["epochs_done"], record["seconds"]
        elif event == RunStopped.name:
            reason = record.get("reason", "")
        elif event == RunFailed.name:
            message = record.get("message", "")
    state = _status(records, run_dir)
    if state == "failed" and not message:
        message = f"the training process (pid {started.get('pid', '?')}) ended without recording why"
    return {
        "path": run_dir,
        "name": run_dir.name,
        "task": config["task"],
        "model": config["model"],
        "epochs_done": done,
        "epochs": config["epochs"],
        "best": best,
        "status": state,
        "reason": reason,
        "message": message,
        "started": first_start if first_start is not None else (run_dir / CONFIG).stat().st_mtime,
        "test": test,
        "seconds": total if total is not None else sum(seconds[epoch] for epoch in seconds if epoch <= done),
        "parameters": started.get("parameters"),
        "config": config,
    }


def _finished_ends(run_dir: Path) -> list[dict[str, Any]] | None:
    """[first run_started, run_finished] when events.jsonl begins with a start and ends with a
    finish, read from its two ends alone; else None, and the whole file is read.

    A finished run's last record holds all a summary needs of its epochs (the best, the test
    metrics, the epochs done, their seconds), and most runs of a folder are finished: listing
    a thousand runs then costs two short reads each, however many batches they recorded.
    """
    try:
        handle = open(run_dir / EVENTS, "rb", opener=read_no_follow)
    except OSError:
        return None
    with handle:
        size = os.fstat(handle.fileno())
        if not stat.S_ISREG(size.st_mode):
            return None
        head = handle.readline(HEAD)
        handle.seek(max(0, size.st_size - TAIL))
        tail = handle.read(TAIL).splitlines()
    first, last = _record(head), _record(tail[-1] if tail else b"")
    if first.get("event") == RunStarted.name and last.get("event") == RunFinished.name:
        return [first, last]
    return None


def _record(line: bytes) -> dict[str, Any]:
    """The event of one line of events.jsonl, or {} for a line that is not a whole one."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return {}
    return record if record_misfit(record) is None else {}


def _best_of(epoch: dict[str, Any], monitor: str) -> dict[str, Any]:
    """The monitored value of an improved epoch; ``auto`` resolves as ``metrics.default_monitor``
    does (accuracy where the task measures it, else the loss) without importing torch."""
    metrics = epoch.get("metrics", {})
    if monitor == "auto":
        monitor = "accuracy" if "accuracy" in metrics else "val_loss"
    value = epoch["val_loss"] if monitor == "val_loss" else metrics.get(monitor)
    return {"monitor": monitor, "value": value, "epoch": epoch["epoch"]}


def list_runs(folder: str | Path) -> list[dict[str, Any]]:
    """The :func:`summary` of every run directory in ``folder``, newest first.

    Other folders and files are passed over; a folder that does not exist yet holds no runs.
    """
    folder = Path(folder)
    if not folder.exists():
        return []
    try:
        children = [path for path in folder.iterdir() if path.is_dir()]
    except OSError as exc:
        raise CheckpointError(f"cannot list the runs in {folder}: {exc.strerror}") from None
    runs = [found for found in map(summary, children) if found is not None]
    return sorted(runs, key=lambda run: (run["started"], run["name"]), reverse=True)


def delete(run_dir: str | Path) -> None:
    """Remove a run directory while holding its lock: refused while a process trains the run
    (or prepares to), and none can start in it while its files go."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise CheckpointError(f"{run_dir} is a symbolic link; only a run directory itself is deleted")
    if not ((run_dir / CONFIG).is_file() or (run_dir / EVENTS).is_file()):
        raise CheckpointError(f"{run_dir} is not a torchdeck run directory; only those are deleted")
    with RunLock(run_dir, before="deleting it"):
        try:
            shutil.rmtree(run_dir)  # links inside are removed, never followed
        except OSError as exc:
            raise CheckpointError(f"cannot delete {run_dir}: {exc.strerror}") from None
