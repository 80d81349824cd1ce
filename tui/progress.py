"""The dashboard's progress: one line (epoch, batch, loss, rate, ETA and a bar) or two where
there is room (the epoch's bar, then the whole run's), PAUSED when paused.

Everything shown comes from the run's events, so a watched run reads the same as a live one,
and nothing counts down between events: while a run is paused no event comes, and the ETA
stays where it was.
"""

from __future__ import annotations

import statistics

from rich.text import Text
from textual.widget import Widget

from engine.events import BatchProgress, EpochEnded, RunStarted
from engine.text import fmt


def duration(seconds: float) -> str:
    """A time as a person reads it: 0.4s, 42s, 3m05s, 2h07m."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s" if seconds >= 0.05 else "0s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def rate_text(rate: float) -> str:
    """Samples per second in three digits or so: 950, 24.0k, 1.2M."""
    for limit, unit in ((1e6, "M"), (1e3, "k")):
        if rate >= limit:
            return f"{rate / limit:.1f}{unit}"
    return f"{rate:.0f}"


def bar(fraction: float, width: int, style: str) -> Text:
    """A bar of ``width`` cells, ``fraction`` of them full."""
    full = round(max(0.0, min(fraction, 1.0)) * width)
    return Text.assemble(("━" * full, style), ("━" * (width - full), "grey23"))


class ProgressLine(Widget):
    """Where the run is: epoch and batch, loss, samples/s, ETA and bars, from its events."""

    DEFAULT_CSS = "ProgressLine { height: 2; }"

    def on_mount(self) -> None:
        self.epochs = self.batches = self.start_epoch = 0
        self.epoch = self.batch = 0
        self.loss = self.rate = self.epoch_eta = float("nan")
        self.epoch_seconds: list[float] = []
        self.paused = False

    @property
    def progress(self) -> int:
        """Batches trained in the whole run (earlier sessions of a resumed run included)."""
        return max(self.epoch - 1, 0) * self.batches + self.batch

    @property
    def total(self) -> int:
        return self.epochs * self.batches

    def started(self, event: RunStarted) -> None:
        self.epochs, self.batches, self.start_epoch = event.epochs, event.batches, event.start_epoch
        self.epoch, self.batch = event.start_epoch, event.batches if event.start_epoch else 0
        self.refresh()

    def on_batch(self, event: BatchProgress) -> None:
        self.epoch, self.batch, self.batches = event.epoch, event.batch, event.batches
        self.loss, self.rate, self.epoch_eta = event.loss, event.samples_per_s, event.eta_s
        self.refresh()

    def on_epoch(self, event: EpochEnded) -> None:
        self.epoch, self.batch, self.epoch_eta = event.epoch, self.batches, 0.0
        self.epoch_seconds.append(event.seconds)
        self.refresh()

    def pause(self, paused: bool) -> None:
        self.paused = paused
        self.refresh()

    def eta(self) -> str:
        """The rest of this epoch (the engine's estimate) and the epochs after it, each as long
        as the median epoch so far (or as this one promises to be); "…" until a batch is seen."""
        if self.epoch >= self.epochs and self.batch >= self.batches:
            return "0s"
        if self.epoch_eta != self.epoch_eta:  # nan: nothing measured yet
            return "…"
        if self.epoch_seconds:
            per_epoch = statistics.median(self.epoch_seconds)
        else:
            left = max(self.batches - self.batch, 1)
            per_epoch = self.epoch_eta * self.batches / left
        later = self.epochs - self.epoch if self.batch < self.batches else self.epochs - self.epoch - 1
        return duration(self.epoch_eta + max(later, 0) * per_epoch)

    def render(self) -> Text:
        width = self.size.width
        style = "yellow" if self.paused else "cyan"
        head = Text("PAUSED ", style="bold black on yellow") if self.paused else Text()
        run = f"epoch {self.epoch}/{self.epochs} · batch {self.batch}/{self.batches}"
        overall = self.progress / self.total if self.total else 0.0
        if self.rate != self.rate:  # nan: no batch reported yet
            return Text.assemble(head, run, " · waiting for the first batch…")
        if self.size.height < 2:  # one line: everything (no stale rate while paused), the whole run's bar
            rate = "" if self.paused else f"{rate_text(self.rate)}/s · "
            line = Text.assemble(head, run, f" · loss {fmt(self.loss)} · {rate}ETA {self.eta()} {overall:4.0%} ")
            room = width - line.cell_len
            return Text.assemble(line, bar(overall, room, style)) if room >= 5 else line
        first = Text.assemble(head, run, f" · loss {fmt(self.loss)} · {self.rate:,.0f} samples/s  ")
        fraction = self.batch / self.batches if self.batches else 0.0
        first.append_text(bar(fraction, max(width - first.cell_len - 5, 0), style))
        first.append(f" {fraction:4.0%}")
        second = Text.assemble(("overall ", "bold"), f"ETA {self.eta()}", "  ")
        second.append_text(bar(overall, max(width - second.cell_len - 5, 0), style))
        second.append(f" {overall:4.0%}")
        return Text("\n").join([first, second])
