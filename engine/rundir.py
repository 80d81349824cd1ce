"""The run directory: everything a later command needs to know about a run.

``checkpoints/<run>/`` holds ``config.toml``, ``events.jsonl`` (every event, one JSON object a
line), ``metrics.csv`` (one row per epoch), ``last.pt`` and ``best.pt``. ``inspect``,
``evaluate``, ``predict``, ``--resume``, ``watch`` and the TUI's browser read only this folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from engine.errors import CheckpointError
from engine.events import TERMINAL_STATUS, Event, EpochEnded

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
        self._events = open(run_dir / EVENTS, "a", encoding="utf-8", buffering=1)

    def write_config(self, config_toml: str) -> None:
        (self.run_dir / CONFIG).write_text(config_toml, encoding="utf-8")

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """Replace metrics.csv with ``history`` (on resume, so it matches the checkpoint)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self._columns())
        for row in history:
            writer.writerow(self._row(row))
        tmp = self.run_dir / f".{METRICS}.tmp"
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
        self._events.write(json.dumps(event.to_dict()) + "\n")
        if isinstance(event, EpochEnded):
            with open(self.run_dir / METRICS, "a", encoding="utf-8", newline="") as handle:
                csv.writer(handle, lineterminator="\n").writerow(self._row(event.to_dict()))
        if event.terminal:
            self._events.close()


def read_events(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """The events recorded in a run directory; a torn last line (a killed writer) is skipped."""
    path = Path(run_dir) / EVENTS
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _why_no_checkpoint(run_dir: Path) -> str:
    state = status(run_dir)
    if state == "running":
        return "the run is still in its first epoch"
    failures = [r.get("message", "") for r in read_events(run_dir) if r.get("event") == "run_failed"]
    return f"the run {state} before its first epoch ended" + (f" ({failures[-1]})" if failures else "")


def status(run_dir: str | Path) -> str:
    """finished, stopped, failed or running; a run whose process died counts as failed."""
    state, started = "running", {}
    for record in read_events(run_dir):
        if record.get("event") == "run_started":
            state, started = "running", record
        elif record.get("event") in TERMINAL_STATUS:
            state = TERMINAL_STATUS[record["event"]]
    if state == "running" and started.get("host") == socket.gethostname() and not _alive(started.get("pid", 0)):
        return "failed"
    return state


def training_pid(run_dir: str | Path) -> int | None:
    """The process on this machine that is training the run right now, if any."""
    if status(run_dir) != "running":
        return None
    started = [r for r in read_events(run_dir) if r.get("event") == "run_started"]
    if started and started[-1].get("host") == socket.gethostname():
        return started[-1].get("pid")
    return None


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
