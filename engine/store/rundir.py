"""The run directory: what a run writes as it goes, for every later command to read.

``checkpoints/<run>/`` holds ``config.toml``, ``events.jsonl`` (every event, one JSON object a
line), ``metrics.csv`` (one row per epoch), ``last.pt`` and ``best.pt``, and ``error.log`` (the
traceback of a bug that ended the run, engine.store.errorlog); ``tensorboard/`` with ``--log
tensorboard`` (engine.store.tblog). ``inspect``,
``evaluate``, ``predict``, ``--resume``, ``watch`` and the TUI's browser read only this folder;
what state its run is in is engine.store.runs' to tell.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shlex
import stat
import time
from pathlib import Path
from typing import Any, Iterator

from engine import usercode
from engine.errors import CheckpointError
from engine.events import EpochEnded, Event, RunFailed, record_misfit
from engine.store import errorlog
from engine.store.atomic import remove_stale, write_atomic

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
    """``task-model-time``; the user's own code by its NAME (``FILE.py:MyModel`` -> ``MyModel``)."""
    task, model = (ref.name if (ref := usercode.parse(text)) else text for text in (task, model))
    return f"{task}-{model}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunWriter:
    """Writes a run's events and metrics as they happen (called in the training thread)."""

    def __init__(self, run_dir: Path, metric_names: list[str]):
        self.run_dir = run_dir
        self.metric_names = metric_names
        self._metrics = None  # metrics.csv, opened at the first epoch's row
        with _writing(run_dir):
            remove_stale(run_dir)
            self._events = open(run_dir / EVENTS, "a", encoding="utf-8", buffering=1, opener=_no_follow)
            if self._events.tell() and _last_byte(run_dir / EVENTS) != b"\n":
                self._events.write("\n")  # a killed writer's torn line must not swallow the next record

    def write_config(self, config_toml: str) -> None:
        write_atomic(self.run_dir / CONFIG, lambda handle: handle.write(config_toml.encode("utf-8")))

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """Replace metrics.csv with ``history`` (on resume, so it matches the checkpoint)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self._columns())
        for row in history:
            writer.writerow(self._row(row))
        write_atomic(self.run_dir / METRICS, lambda handle: handle.write(buffer.getvalue().encode("utf-8")))

    def _columns(self) -> list[str]:
        return ["epoch", "train_loss", "val_loss", *self.metric_names, "lr", "seconds", "samples"]

    def _row(self, row: dict[str, Any]) -> list[Any]:
        metrics = row["metrics"]
        return [
            row["epoch"], row["train_loss"], row["val_loss"],
            *(metrics.get(name, "") for name in self.metric_names),
            row["lr"], round(row["seconds"], 4), row["samples"],
        ]

    def _append_metrics(self, event: EpochEnded) -> None:
        """One row under the one header: a file gone since the run began (removed by hand) starts
        with its header again, and the row holds the epoch's own numbers (a NaN as nan), as
        :meth:`rewrite_metrics` writes them from the history, not the JSON line's nulls. The file
        stays open between epochs (opening it took a tenth of a short epoch) and is opened again
        once it has no name left: removed, or replaced by :meth:`rewrite_metrics`."""
        handle = self._metrics
        if handle is None or os.fstat(handle.fileno()).st_nlink == 0:
            if handle is not None:
                handle.close()
            handle = self._metrics = open(self.run_dir / METRICS, "a", encoding="utf-8", newline="",
                                          opener=_no_follow)
        writer = csv.writer(handle, lineterminator="\n")
        if not handle.tell():
            writer.writerow(self._columns())
        writer.writerow(self._row(vars(event)))
        handle.flush()

    def __call__(self, event: Event) -> None:
        """Record ``event``. A write that fails (disk full, folder made read-only) ends the run
        with a CheckpointError naming the folder and the reason; the terminal event that follows
        is recorded if the disk allows and never raises, so the front end still hears the end."""
        try:
            with _writing(self.run_dir):
                record = event.to_dict()
                self._events.write(json.dumps(record) + "\n")
                if isinstance(event, EpochEnded):
                    self._append_metrics(event)
                if isinstance(event, RunFailed) and event.details:  # a bug's traceback, kept readable
                    errorlog.save(event.details, self.run_dir)
        except CheckpointError:
            if not event.terminal:
                raise
        finally:
            if event.terminal:
                for handle in (self._events, self._metrics):
                    try:
                        if handle is not None:
                            handle.close()
                    except OSError:  # the unwritten rest of a full disk's buffer
                        pass


def refuse_links(run_dir: Path) -> None:
    """Refuse a run directory holding symbolic links before a run writes in it: a crafted one
    (a downloaded run, say) would have its events, config or checkpoints land wherever its links
    point, such as a shell's rc file."""
    links = sorted(entry.name for entry in run_dir.iterdir() if entry.is_symlink())
    if links:
        raise CheckpointError(f"{run_dir} holds symbolic links ({', '.join(links)}); "
                              f"a run directory is resumed only without them")


def _no_follow(path: str, flags: int) -> int:
    """The opener of the files a run appends to: a link in their place fails instead of being followed."""
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def read_events(run_dir: str | Path, skip: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """The events recorded in a run directory, each a record that fits its event's fields.

    A torn line (a killed writer), a line that is not JSON and a record of a known event whose
    fields are missing or of the wrong type (a damaged or hand-edited log) are skipped alike, so
    every reader may index the fields it needs. Events named in ``skip`` are passed over without
    being parsed: a long run records many thousands of batch events, and a reader that needs only
    the milestones should not pay for them. An ``events.jsonl`` that is a symbolic link, or not
    a regular file, holds no events: a run directory's files are never followed elsewhere.
    """
    skipped = tuple(f'{{"event": "{name}"'.encode() for name in skip)  # RunWriter writes the name first
    try:
        handle = open(Path(run_dir) / EVENTS, "rb", opener=read_no_follow)
    except OSError:  # missing, a link, unreadable
        return
    with handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return
        for line in handle:
            if line.startswith(skipped):
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past reading
                continue
            if record_misfit(record) is None:
                yield record


def read_no_follow(path: str, flags: int) -> int:
    """The opener of a run directory's files read back: a link fails instead of being followed,
    and a FIFO in their place does not block the open (it is then refused as no regular file)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK)


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
