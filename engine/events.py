"""The events a run reports, and the stream that carries them to front ends.

The training thread publishes events; any number of listeners (the run-directory writer) see
each one synchronously in that thread, and one consumer reads them from a thread-safe queue,
either as a plain iterator (CLI) or with ``async for`` (TUI). Every event is a flat dict-like
dataclass whose ``to_dict()`` is exactly the JSON line written to ``--json`` and
``events.jsonl``, so ``watch`` can rebuild the same events from a file.
"""

from __future__ import annotations

import asyncio
import functools
import math
import queue
import threading
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import (
    Annotated,
    Any,
    AsyncIterator,
    Callable,
    ClassVar,
    Iterator,
    TypedDict,
)

from engine.schema import TIME, misfit


@dataclass
class Event:
    name: ClassVar[str] = "event"
    terminal: ClassVar[bool] = False
    time: Annotated[float, TIME] = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        return strict_json({"event": self.name, **asdict(self)})


def strict_json(value: Any) -> Any:
    """``value`` with NaN and infinities as None, so every JSON parser can read it."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


class Best(TypedDict):
    """The best epoch so far: what early stopping keeps and a finished run reports."""

    epoch: int
    monitor: str
    value: float
    val_loss: float


class StartedConfig(TypedDict):
    """Of a started run's config (every RunConfig field), those that its readers show."""

    task: str
    model: str
    optimizer: str
    lr: float


class Sizes(TypedDict):
    train: int
    val: int
    test: int


@dataclass
class RunStarted(Event):
    name: ClassVar[str] = "run_started"
    run_dir: str
    config: StartedConfig
    device: str
    device_name: str
    parameters: int
    sizes: Sizes
    epochs: int
    batches: int
    start_epoch: int = 0
    resumed_from: str | None = None
    pid: int = 0
    host: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    world_size: int = 1  # processes training together (torchdeck train --nproc, torchrun); rank 0 reports


@dataclass
class BatchProgress(Event):
    name: ClassVar[str] = "batch"
    epoch: int
    epochs: int
    batch: int
    batches: int
    step: int
    loss: float
    samples_per_s: float
    eta_s: float


@dataclass
class EpochEnded(Event):
    name: ClassVar[str] = "epoch"
    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    metrics: dict[str, float]
    lr: float
    seconds: float
    samples: int
    improved: bool = False


@dataclass
class CheckpointSaved(Event):
    name: ClassVar[str] = "checkpoint"
    path: str
    kind: str  # best | last
    epoch: int


@dataclass
class Message(Event):
    name: ClassVar[str] = "message"
    text: str
    level: str = "info"  # info | warning


@dataclass
class RunFinished(Event):
    name: ClassVar[str] = "run_finished"
    terminal: ClassVar[bool] = True
    run_dir: str
    reason: str  # completed | early_stopping
    epochs_done: int
    best: Best
    test: dict[str, float]
    seconds: float


@dataclass
class RunStopped(Event):
    name: ClassVar[str] = "run_stopped"
    terminal: ClassVar[bool] = True
    run_dir: str
    reason: str
    epoch: int
    batch: int
    checkpoint: str | None
    resume_command: str


@dataclass
class RunFailed(Event):
    name: ClassVar[str] = "run_failed"
    terminal: ClassVar[bool] = True
    message: str
    run_dir: str | None = None
    details: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (RunStarted, BatchProgress, EpochEnded, CheckpointSaved, Message, RunFinished, RunStopped, RunFailed)
}

TERMINAL_STATUS = {RunFinished.name: "finished", RunStopped.name: "stopped", RunFailed.name: "failed"}


def record_misfit(record: Any) -> str | None:
    """Why a record read back from events.jsonl cannot be the event it names (None: it can, or
    it names an event this torchdeck does not know, which readers pass over). Fields that newer
    versions may add are ignored; a known field that is missing or of the wrong type is not."""
    if not isinstance(record, dict) or not isinstance(record.get("event"), str):
        return "the record names no event"
    cls = EVENT_TYPES.get(record["event"])
    return None if cls is None else misfit(_known(record, cls), cls, record["event"], from_json=True)


def event_from_dict(data: Any) -> Event:
    """Rebuild an event from its JSON form: KeyError for an event this torchdeck does not know,
    TypeError for a record that does not fit its event (see :func:`record_misfit`)."""
    problem = record_misfit(data)
    if problem:
        raise TypeError(problem)
    cls = EVENT_TYPES[data["event"]]
    numbers = _numbers(cls)  # strict_json wrote their NaN as None
    return cls(**{k: math.nan if v is None and k in numbers else v for k, v in _known(data, cls).items()})


def _known(record: dict[str, Any], cls: type[Event]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {key: value for key, value in record.items() if key in names}


@functools.cache
def _numbers(cls: type[Event]) -> frozenset[str]:
    return frozenset(name for name, kind in typing.get_type_hints(cls).items() if kind is float)


_END = object()


class EventStream:
    """Events from one producer thread to one consumer, in order, ending at a terminal event."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._listeners: list[Callable[[Event], None]] = []
        self.producer: threading.Thread | None = None  # set by the run; its death ends the stream

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` in the producer thread for every event, before it is queued."""
        self._listeners.append(listener)

    def publish(self, event: Event) -> None:
        for listener in self._listeners:
            listener(event)
        self._queue.put(event)
        if event.terminal:
            self._queue.put(_END)

    def drain(self) -> list[Event]:
        """Every event queued so far, without waiting (for consumers that poll on a timer)."""
        events = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return events
            if item is _END:
                self._queue.put(_END)
                return events
            events.append(item)

    def __iter__(self) -> Iterator[Event]:
        while True:
            # A short timeout keeps the main thread responsive to signals such as Ctrl+C.
            item = self._next_blocking()
            if item is _END:
                return
            yield item

    def _next_blocking(self):
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self.producer is not None and not self.producer.is_alive() and self._queue.empty():
                    return _END  # the producer ended without a terminal event: never wait forever
                continue
            if item is _END:
                self._queue.put(_END)
            return item

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            item = await asyncio.to_thread(self._next_blocking)
            if item is _END:
                return
            yield item
