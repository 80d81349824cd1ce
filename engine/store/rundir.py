"""The run directory: everything a later command needs to know about a run.

``checkpoints/<run>/`` holds ``config.toml``, ``events.jsonl`` (every event, one JSON object a
line), ``metrics.csv`` (one row per epoch), ``last.pt`` and ``best.pt``. ``inspect``,
``evaluate``, ``predict``, ``--resume``, ``watch`` and the TUI's browser read only this folder.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from engine.config import tomllib
from engine.errors import CheckpointError
from engine.events import (
    TERMINAL_STATUS,
    BatchProgress,
    EpochEnded,
    Event,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
)

CONFIG = "config.toml"
EVENTS = "events.jsonl"
METRICS = "metrics.csv"
LAST = "last.pt"
BEST = "best.pt"


def create(out: str | Path, base_name: str) -> Path:
    """Make a new, empty run directory named ``base_name`` (or ``base_name-2``, ``-3`` ...).

    ``mkdir`` fails if the folder exists, so two runs started at once with the same name
    still get different directories.
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"cannot create the output folder {out}: {exc.strerror}") from None
    for attempt in range(1, 10_000):
        path = out / (base_name if attempt == 1 else f"{base_name}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise CheckpointError(f"cannot create the run directory {path}: {exc.strerror}") from None
        return path
    raise CheckpointError(f"too many runs named {base_name} in {out}")


def resume_command(run_dir: str | Path) -> str:
    """The command that continues the run in ``run_dir``, quoted for a shell."""
    return f"torchdeck train --resume {shlex.quote(str(run_dir))}"


def default_name(task: str, model: str) -> str:
    return f"{task}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


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


class RunWriter:
    """Writes a run's events and metrics as they happen (called in the training thread)."""

    def __init__(self, run_dir: Path, metric_names: list[str]):
        self.run_dir = run_dir
        self.metric_names = metric_names
        with _writing(run_dir):
            _remove_stale_temporaries(run_dir)
            self._events = open(run_dir / EVENTS, "a", encoding="utf-8", buffering=1)
            if self._events.tell() and _last_byte(run_dir / EVENTS) != b"\n":
                self._events.write("\n")  # a killed writer's torn line must not swallow the next record

    def write_config(self, config_toml: str) -> None:
        with _writing(self.run_dir):
            (self.run_dir / CONFIG).write_text(config_toml, encoding="utf-8")

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """Replace metrics.csv with ``history`` (on resume, so it matches the checkpoint)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self._columns())
        for row in history:
            writer.writerow(self._row(row))
        tmp = self.run_dir / f".{METRICS}.tmp"
        with _writing(self.run_dir):
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
            os.replace(tmp, self.run_dir / METRICS)

    def _columns(self) -> list[str]:
        return ["epoch", "train_loss", "val_loss", *self.metric_names, "lr", "seconds", "samples"]

    def _row(self, row: dict[str, Any]) -> list[Any]:
        metrics = row["metrics"]
        return [
            row["epoch"], row["train_loss"], row["val_loss"],
            *(metrics.get(name, "") for name in self.metric_names),
            row["lr"], round(row["seconds"], 4), row["samples"],
        ]

    def __call__(self, event: Event) -> None:
        """Record ``event``. A write that fails (disk full, folder made read-only) ends the run
        with a CheckpointError naming the folder and the reason; the terminal event that follows
        is recorded if the disk allows and never raises, so the front end still hears the end."""
        try:
            with _writing(self.run_dir):
                record = event.to_dict()
                self._events.write(json.dumps(record) + "\n")
                if isinstance(event, EpochEnded):
                    with open(self.run_dir / METRICS, "a", encoding="utf-8", newline="") as handle:
                        csv.writer(handle, lineterminator="\n").writerow(self._row(record))
        except CheckpointError:
            if not event.terminal:
                raise
        finally:
            if event.terminal:
                try:
                    self._events.close()
                except OSError:  # the unwritten rest of a full disk's buffer
                    pass


def read_events(run_dir: str | Path, skip: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The events recorded in a run directory; a torn last line (a killed writer) is skipped.

    Events named in ``skip`` are passed over without being parsed: a long run records many
    thousands of batch events, and a reader that needs only the milestones should not pay for them.
    """
    path = Path(run_dir) / EVENTS
    if not path.is_file():
        return
    skipped = tuple(f'{{"event": "{name}"' for name in skip)  # RunWriter writes the name first
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(skipped):
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


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


STARTS_WITHIN = 60.0  # seconds: a run directory whose run has not started by then never will


def status(run_dir: str | Path) -> str:
    """finished, stopped, failed or running; a run whose process died counts as failed."""
    return _status(read_events(run_dir, skip=(BatchProgress.name,)), run_dir)


def _status(records: Iterable[dict[str, Any]], run_dir: str | Path) -> str:
    state, started = "running", {}
    for record in records:
        if record.get("event") == "run_started":
            state, started = "running", record
        elif record.get("event") in TERMINAL_STATUS:
            state = TERMINAL_STATUS[record["event"]]
    if state != "running":
        return state
    if not started:  # no process recorded yet: being prepared, or it died before it could say so
        return "failed" if _age(Path(run_dir) / EVENTS) > STARTS_WITHIN else "running"
    if started.get("host") == socket.gethostname() and not _alive(started.get("pid", 0)):
        return "failed"
    return state


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def summary(run_dir: str | Path) -> dict[str, Any] | None:
    """What a list of runs shows about one, from config.toml and events.jsonl alone.

    No checkpoint is loaded, so listing a folder stays fast however large the models are. None
    when ``run_dir`` is not a run directory (it holds no readable config.toml). The keys: path,
    name, task, model, epochs_done, epochs (the total), best (monitor, value and epoch; empty
    before the first epoch), status, reason (why it finished or stopped), message (why it
    failed), started (time of its first start), parameters and config.
    """
    run_dir = Path(run_dir)
    try:
        config = tomllib.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    if not {"task", "model", "epochs"} <= config.keys():
        return None
    records = list(read_events(run_dir, skip=(BatchProgress.name,)))
    first_start, started, done, best, reason, message = None, {}, 0, {}, "", ""
    for record in records:
        event = record.get("event")
        if event == RunStarted.name:
            first_start = first_start or record.get("time")
            started, done, reason, message = record, record.get("start_epoch", done), "", ""
        elif event == EpochEnded.name:
            done = record["epoch"]
            if record.get("improved"):
                best = _best_of(record, config.get("monitor", "auto"))
        elif event == RunFinished.name:
            best = record.get("best") or best  # also knows a best epoch that a resumed branch did not record
            reason = record.get("reason", "")
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
        "parameters": started.get("parameters"),
        "config": config,
    }


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


def training_pid(run_dir: str | Path) -> int | None:
    """The process on this machine that is training the run right now, if any."""
    if status(run_dir) != "running":
        return None
    started = [r for r in read_events(run_dir) if r.get("event") == "run_started"]
    if started and started[-1].get("host") == socket.gethostname():
        return started[-1].get("pid")
    return None


@contextlib.contextmanager
def _writing(run_dir: Path) -> Iterator[None]:
    """Turn an OSError while writing into ``run_dir`` into one line naming the folder and the reason."""
    try:
        yield
    except OSError as exc:
        raise CheckpointError(f"cannot write to the run directory {run_dir}: {exc.strerror or exc}") from None


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete the half-written checkpoints (``.last.pt.<pid>.tmp``) of processes that were killed."""
    for tmp in run_dir.glob(".*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
