"""Where a dashboard's events come from: a run trained here, or a run directory on disk.

The dashboard polls its source on a timer (``source.poll()`` returns the events that arrived
since the last call, without waiting). Polling a few times a second, rather than waking up for
every event, lets the UI redraw at a steady pace that leaves the training thread nearly all of
the interpreter, and one code path serves a live run and ``torchdeck watch``.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.events import (
    BatchProgress,
    CheckpointSaved,
    Event,
    RunFailed,
    event_from_dict,
)
from engine.store import rundir, runs
from engine.train.control import Control


class LiveRun:
    """A run trained in this process; the dashboard can pause and stop it."""

    def __init__(self, run) -> None:
        self.run = run
        self.run_dir: Path = run.run_dir
        self.control: Control | None = run.control

    def start(self) -> None:
        self.run.start()

    def earlier_epochs(self, start_epoch: int) -> list[dict]:
        """The history a resumed run brought from its checkpoint (its events came earlier)."""
        return list(self.run.state.history[:start_epoch])

    def poll(self) -> list[Event]:
        events = self.run.events.drain()
        if not events and not self.run.thread.is_alive() and self.run.result is None:
            return [RunFailed(message="the training thread ended without reporting why", run_dir=str(self.run_dir))]
        return events


class WatchedRun:
    """A run written by another process (``torchdeck train`` under nohup, tmux, SSH).

    Follows ``events.jsonl`` as it grows; a run whose process died without a final event
    ends with a failure event that says so.
    """

    control: Control | None = None

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.offset = 0
        self.pending = b""

    def start(self) -> None:
        """Nothing to start: another process trains the run."""

    def earlier_epochs(self, start_epoch: int) -> list[dict]:
        return []  # events.jsonl holds every earlier session's epochs too

    def poll(self) -> list[Event]:
        try:
            with open(self.run_dir / rundir.EVENTS, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        self.offset += len(chunk)
        *lines, self.pending = (self.pending + chunk).split(b"\n")
        events = [event for event in map(_parse, lines) if event is not None]
        if not events and not chunk and runs.status(self.run_dir) == "failed":
            return [RunFailed(message="the training process ended without reporting why (killed?)",
                              run_dir=str(self.run_dir))]
        return events


def newest_only(events: list[Event]) -> list[Event]:
    """``events`` less the frequent kinds' older ones (batch progress, each kind of checkpoint):
    shown in one redraw, they would be overwritten before anyone could read them."""
    newest = {_coalesce_key(event): index for index, event in enumerate(events)}
    return [event for index, event in enumerate(events)
            if (key := _coalesce_key(event)) is None or newest[key] == index]


def _coalesce_key(event: Event) -> str | None:
    if isinstance(event, BatchProgress):
        return "batch"
    if isinstance(event, CheckpointSaved):
        return f"checkpoint-{event.kind}"
    return None


def _parse(line: bytes) -> Event | None:
    try:
        return event_from_dict(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, RecursionError):
        return None
