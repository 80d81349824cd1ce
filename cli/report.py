"""How ``torchdeck train`` shows a run: Rich on a terminal, plain lines in a log, JSON lines.

A reporter is called with each event in the main thread. The plain reporter writes exactly one
line per epoch plus a start and an end line, with no colour codes or carriage returns, so a log
written under nohup or tmux reads like Keras' ``verbose=2``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from typing import Iterator, TextIO

from engine.events import (
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    Event,
    Message,
    RunFailed,
    RunFinished,
    RunStarted,
    RunStopped,
)
from engine.text import (
    finished_text,
    fmt,
    metrics_text,
    printable,
    started_text,
    stopped_text,
)

REFRESH_EVERY = 0.25  # seconds between redraws of the terminal's progress bars


class JsonReporter:
    """Every event as one JSON object per line on stdout: the same lines as events.jsonl."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        print(json.dumps(event.to_dict()), file=self.out, flush=True)

    def close(self) -> None:
        pass


class PlainReporter:
    """One line per epoch, plus start and end lines, for logs and pipes."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None):
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._line(f"start {event.run_dir} · {started_text(event)}")
        elif isinstance(event, EpochEnded):
            mark = "  *" if event.improved else ""
            self._line(
                f"epoch {event.epoch}/{event.epochs}  train_loss {fmt(event.train_loss)}  "
                f"val_loss {fmt(event.val_loss)}  {metrics_text(event.metrics)}  lr {event.lr:.3g}  "
                f"{event.seconds:.2f}s{mark}"
            )
        elif isinstance(event, RunFinished):
            self._line(f"end {finished_text(event)} · {event.run_dir}")
        elif isinstance(event, RunStopped):
            self._line(f"end {stopped_text(event)}")
        elif isinstance(event, RunFailed):
            self._line(f"end failed: {event.message}")
        elif isinstance(event, Message) and event.level == "warning":
            print(f"warning: {printable(event.text)}", file=self.err, flush=True)

    def _line(self, text: str) -> None:
        print(printable(text), file=self.out, flush=True)

    def close(self) -> None:
        pass


class RichReporter:
    """A live progress bar per epoch with one table row per finished epoch, for terminals.

    Lines are printed as Rich ``Text``, never as markup: a run directory, a column or a class
    name such as ``[/]`` or ``weight [kg]`` is data, shown as given (controls escaped).
    """

    def __init__(self, console=None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = console or Console()
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,  # drawn when events come, at most every REFRESH_EVERY: no thread of its own
        )
        self.drawn = 0.0
        self.epoch_task = None
        self.total_task = None
        self.columns: list[str] = []
        self.widths: list[int] = []

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._started(event)
        elif isinstance(event, BatchProgress):
            self._batch(event)
        elif isinstance(event, EpochEnded):
            self._epoch(event)
        elif isinstance(event, Message):
            self._print((event.text, "yellow" if event.level == "warning" else "cyan"))
        elif isinstance(event, CheckpointSaved):
            pass  # the end summary names the files
        elif event.terminal:
            self.close()
            self._ended(event)

    def _started(self, event: RunStarted) -> None:
        self._print(("torchdeck", "bold"), " ", started_text(event))
        self._print("run directory ", (event.run_dir, "cyan"))
        self.progress.start()
        done = event.start_epoch * event.batches
        self.total_task = self.progress.add_task("overall", total=event.epochs * event.batches,
                                                 completed=done, detail="")
        self.epoch_task = self.progress.add_task("epoch", total=event.batches, detail="")

    def _batch(self, event: BatchProgress) -> None:
        detail = (f"batch {event.batch}/{event.batches} · loss {fmt(event.loss)} · "
                  f"{event.samples_per_s:,.0f} samples/s")
        self.progress.update(self.epoch_task, description=f"epoch {event.epoch}/{event.epochs}",
                             completed=event.batch, total=event.batches, detail=detail)
        self.progress.update(self.total_task, completed=(event.epoch - 1) * event.batches + event.batch)
        self._draw()

    def _epoch(self, event: EpochEnded) -> None:
        total = self.progress.tasks[self.epoch_task].total or 0  # batch events come only every 0.1 s
        self.progress.update(self.epoch_task, completed=total)
        self.progress.update(self.total_task, completed=event.epoch * total)
        self._draw(now=True)
        if not self.columns:
            self.columns = ["epoch", "train_loss", "val_loss", *event.metrics, "lr", "time"]
            self.widths = [max(len(c), 8) for c in self.columns]
            self._print((" ".join(f"{c:>{w}}" for c, w in zip(self.columns, self.widths)), "bold"))
        cells = [f"{event.epoch}/{event.epochs}", fmt(event.train_loss), fmt(event.val_loss),
                 *(fmt(v) for v in event.metrics.values()), f"{event.lr:.3g}", f"{event.seconds:.2f}s"]
        mark = " *" if event.improved else ""
        self._print(" ".join(f"{c:>{w}}" for c, w in zip(cells, self.widths)), (mark, "green"))

    def _draw(self, now: bool = False) -> None:
        """Redraw the bars, at most every REFRESH_EVERY seconds unless ``now``. Drawing holds the
        GIL for a millisecond or two, which the training thread waits out: Rich's own refresh
        thread, drawing ten times a second whether anything changed or not, cost the run a few
        per cent of its pace."""
        if now or time.monotonic() - self.drawn >= REFRESH_EVERY:
            self.progress.refresh()
            self.drawn = time.monotonic()

    def _ended(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self._print((finished_text(event), "green bold"))
            self._print("best checkpoint ", (f"{event.run_dir}/best.pt", "cyan"), " · last ",
                        (f"{event.run_dir}/last.pt", "cyan"))
        elif isinstance(event, RunStopped):
            self._print((stopped_text(event), "yellow"))
        elif isinstance(event, RunFailed):
            self._print(("run failed:", "red bold"), " ", event.message)

    def _print(self, *parts: str | tuple[str, str]) -> None:
        """One line of plain strings and (string, style) pairs, as text with controls escaped."""
        from rich.text import Text

        self.console.print(Text.assemble(*(printable(p) if isinstance(p, str) else (printable(p[0]), p[1])
                                           for p in parts)))

    def close(self) -> None:
        if self.progress.live.is_started:
            self.progress.stop()


def make_reporter(json_lines: bool, terminal: bool | None = None):
    """The reporter for this output: JSON lines, Rich on a terminal, plain lines otherwise."""
    if json_lines:
        return JsonReporter()
    if terminal is None:
        terminal = sys.stdout.isatty()
    return RichReporter() if terminal else PlainReporter()


READER_GONE = {errno.EPIPE, errno.EIO}  # a pipe closed early (`| head`), a terminal that hung up


class Vanishing:
    """A text stream that goes quiet when no one reads it any more.

    A long run outlives the terminal it started in, and ``| head -2`` closes its pipe early.
    The run directory records everything, so the run trains on to its end (or its stop) and
    ends as it would have, rather than failing on output no one can see. The first write that
    finds the reader gone points the stream's descriptor at /dev/null: every later write, from
    any thread (Rich's refresh too) and the interpreter's flush at exit, then goes nowhere.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            self._reader_gone(exc)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            self._reader_gone(exc)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)

    def _reader_gone(self, exc: OSError) -> None:
        if exc.errno not in READER_GONE:
            raise exc
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)


@contextlib.contextmanager
def output_may_vanish() -> Iterator[None]:
    """sys.stdout and sys.stderr as Vanishing streams inside the block (make reporters inside it)."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Vanishing(sys.stdout), Vanishing(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams
