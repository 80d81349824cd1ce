"""Widgets shared by the dashboard and the checkpoint browser, and ``plain``: how every name
and value from a run or its data is shown."""

from __future__ import annotations

import math
import os
import resource
from typing import Any, Iterable

from rich.table import Table
from rich.text import Text
from textual.widgets import DataTable, Static
from textual_plotext import PlotextPlot

from engine.text import fmt, printable


def plain(value: Any, style: str = "") -> Text:
    """A name or value as text, never markup, its control characters escaped: a class ``[/]``
    would crash a markup parser and ``ESC [2J`` would clear the screen."""
    return Text(printable(str(value)), style=style)


# One colour per series, in the dashboard and the browser alike (RGB: plotext and Rich agree on it).
SERIES_COLOURS = [(86, 182, 194), (229, 152, 82), (152, 195, 121), (198, 120, 221), (224, 108, 117)]
BEST_COLOUR = (229, 192, 123)
VIEWS = ("loss", "metrics", "lr")


def epoch_ticks(last: int, room: int) -> list[int]:
    """Whole epochs 1..last, at most ``room`` of them, on a 1-2-5 step."""
    step = 1
    while last / step > max(room, 2):
        step = next(s * 10 ** k for k in range(10) for s in (2, 5, 10) if s * 10 ** k > step)
    return [1, *range(step, last + 1, step)] if step > 1 else list(range(1, last + 1))


class ChartViews:
    """What a chart shows: one of its ``views`` (``v`` cycles them), on a log or a linear axis
    (``l``; each view its own, in ``log_views``: a loss falls by decades, a metric does not)."""

    view = "loss"
    log_views: set[str]
    views: tuple[str, ...] | list[str]

    def cycle_view(self) -> None:
        views = self.views
        self.view = views[(views.index(self.view) + 1) % len(views)]
        self.redraw()

    def toggle_log(self) -> None:
        self.log_views ^= {self.view}
        self.redraw()

    @property
    def log_y(self) -> bool:
        return self.view in self.log_views

    def redraw(self) -> None:
        self.refresh()


class LossCurve(ChartViews, PlotextPlot):
    """Per epoch: train and validation loss, the metrics, or the learning rate (``view``), on a
    log or linear axis (each view its own), the best epoch marked; before the first epoch ends,
    the batch losses.

    The legend is the title (its keys coloured as the lines are), never over the data; the plot
    is drawn at most once a second: plotting is costly on a fast run."""

    views = VIEWS

    def on_mount(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.batches: list[tuple[float, float]] = []  # (epoch + fraction, loss) before the first epoch
        self.best_epoch: int | None = None
        self.view = "loss"
        self.log_views = {"loss"}  # the views on a log axis: a loss falls by decades, a metric does not
        self.keys: list[tuple[str, tuple[int, int, int]]] = []  # the drawn lines' names and colours
        self._dirty = False
        self.set_interval(1.0, self._redraw_if_dirty)
        self.redraw()

    @property
    def train(self) -> list[float]:
        return [row["train_loss"] for row in self.rows]

    @property
    def val(self) -> list[float]:
        return [row["val_loss"] for row in self.rows]

    def add_epoch(self, row: dict[str, Any], improved: bool = False) -> None:
        self.rows.append(row)
        self.best_epoch = row["epoch"] if improved else self.best_epoch
        self._dirty = True

    def add_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        """A batch's loss: plotted only until the first epoch ends, so the frame is never empty."""
        if not self.rows:
            self.batches.append((epoch - 1 + batch / max(batches, 1), loss))
            self._dirty = True

    def show_history(self, history: Iterable[dict[str, Any]], best_epoch: int | None = None) -> None:
        self.rows, self.batches, self.best_epoch = list(history), [], best_epoch
        self.redraw()

    def series(self) -> dict[str, list[tuple[float, float]]]:
        """The view's lines as name → finite (x, y) points."""
        if not self.rows:
            return {"batch loss": self.batches} if self.view == "loss" else {}
        if self.view == "loss":
            named = {"train": lambda row: row["train_loss"], "val": lambda row: row["val_loss"]}
        elif self.view == "lr":
            named = {"lr": lambda row: row["lr"]}
        else:
            named = {name: (lambda row, name=name: row["metrics"].get(name, math.nan))
                     for name in self.rows[-1]["metrics"]}
        return {name: [(row["epoch"], float(get(row))) for row in self.rows if math.isfinite(get(row))]
                for name, get in named.items()}

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self.redraw()

    def redraw(self) -> None:
        self._dirty = False
        self.refresh()

    def _feed(self) -> None:
        """Hand plotext this frame's data: at each render, since plotext turns the data it holds
        into logarithms in place when it builds a log axis (a second build would take them again)."""
        plt = self.plt
        plt.clear_data()
        plt.xlabel("epoch" if self.size.height >= 10 else "")  # a short plot keeps its rows for the data
        lines = self.series()
        floor = min((y for points in lines.values() for _, y in points if y > 0), default=1.0)
        self.keys = self.legend(lines)
        plt.yscale("log" if self.log_y and self.keys else "linear")  # plotext's log axis needs data
        for name, colour in self.keys:
            ys = [max(y, floor) for _, y in lines[name]] if self.log_y else [y for _, y in lines[name]]
            plt.plot([x for x, _ in lines[name]], ys, marker="braille", color=colour)
        if self.rows:
            ticks = epoch_ticks(self.rows[-1]["epoch"], self.size.width // 8)
            plt.xticks(ticks, [str(tick) for tick in ticks])
            if self.best_epoch is not None:
                plt.vline(self.best_epoch, BEST_COLOUR)
        plt.title(self.title(lines))

    @staticmethod
    def legend(lines: dict[str, list[tuple[float, float]]]) -> list[tuple[str, tuple[int, int, int]]]:
        """The lines that have points, each with its colour (the same for a name's place in every view)."""
        return [(name, SERIES_COLOURS[index % len(SERIES_COLOURS)])
                for index, (name, points) in enumerate(lines.items()) if points]

    def title(self, lines: dict[str, list[tuple[float, float]]] | None = None) -> str:
        """The view, its scale, the lines' keys and the best epoch: the legend, outside the data."""
        keys = "  ".join(f"━ {name}" for name, _ in self.legend(self.series() if lines is None else lines))
        best = f"  ┊ best {self.best_epoch}" if self.best_epoch is not None and self.rows else ""
        scale = " (log)" if self.log_y else ""
        return f"{self.view}{scale}  {keys}{best}" if keys else f"{self.view}: nothing yet"

    def render(self) -> Text:
        """The plot, its title's legend keys coloured as their lines."""
        self._feed()
        text = super().render()
        head = text.plain.split("\n", 1)[0]
        for name, colour in [*self.keys, ("best", BEST_COLOUR)]:
            key = f"┊ {name}" if name == "best" else f"━ {name}"
            if (at := head.find(key)) >= 0:
                text.stylize("bold rgb({},{},{})".format(*colour), at, at + 1)
        return text


class EpochTable(DataTable):
    """One row per finished epoch: losses, metrics, learning rate, seconds.

    Live rows are queued and added once a second: adding a row makes the table render again,
    and on a fast run that would cost the training thread more time than the rows are worth.
    """

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.queued: list[tuple[dict[str, Any], bool]] = []
        self.set_interval(1.0, self.flush)

    def queue_epoch(self, row: dict[str, Any], improved: bool = False) -> None:
        self.queued.append((row, improved))

    def flush(self) -> None:
        queued, self.queued = self.queued, []
        for row, improved in queued:
            self.add_epoch(row, improved)
        if queued:
            self.follow()

    def add_epoch(self, row: dict[str, Any], improved: bool = False) -> None:
        metrics = row["metrics"]
        if not self.columns:
            self.add_columns("epoch", "train loss", "val loss", *metrics, "lr", "seconds", "")
        self.add_row(
            str(row["epoch"]), fmt(row["train_loss"]), fmt(row["val_loss"]),
            *(fmt(value) for value in metrics.values()), f"{row['lr']:.3g}", f"{row['seconds']:.2f}",
            "★" if improved else "",
        )

    def follow(self) -> None:
        """Put the cursor on the newest row (once per batch of rows: each move costs a scan of
        the rows)."""
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)
            self.scroll_end(animate=False)  # also once the table is laid out (its size known)

    def on_resize(self) -> None:
        """A table that showed its newest row still does once the terminal is resized."""
        if self.row_count and self.cursor_row == self.row_count - 1:
            self.call_after_refresh(self.scroll_end, animate=False)

    def show_history(self, history: Iterable[dict[str, Any]], best_epoch: int | None = None) -> None:
        self.clear(columns=True)
        for row in history:
            self.add_epoch(row, improved=row["epoch"] == best_epoch)
        self.follow()


def process_memory() -> int:
    """Resident memory of this process in bytes (peak where the current value is unknown)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gib(count: float) -> str:
    return f"{count / 2**30:.2f} GiB"


class DevicePanel(Static):
    """Where the run trains, on one line: device name, GPU memory, CPU threads, process memory, torch.

    For a run in this process the numbers are measured every two seconds; for a watched run
    (another process, maybe another machine) only what its events recorded is shown.
    """

    def on_mount(self) -> None:
        self.info: dict[str, Any] = {}
        self.local = False
        self.set_interval(2.0, self._tick)

    def show(self, info: dict[str, Any], local: bool) -> None:
        self.info, self.local = dict(info), local
        self._tick()

    def _tick(self) -> None:
        if not self.info:
            return
        info = self.info
        if self.local:
            from engine.device import device_info

            info.update(device_info(info["device"]))
        lines = [Text.assemble(plain(info["device"], "bold"), " ", plain(info["name"]))]
        if info.get("processes", 1) > 1:  # a torchrun job: this is rank 0's view
            lines.append(f"{info['processes']} processes (data parallel), rank 0 shown")
        if "memory_total" in info:
            lines.append(f"GPU memory {gib(info['memory_used'])} / {gib(info['memory_total'])}")
        if self.local:
            lines.append(f"CPU threads {info['cpu_threads']} of {info['cpu_count']}")
            lines.append(f"process memory {gib(process_memory())}")
        lines.append(f"torch {info['torch']}")
        self.update(Text(" · ", style="dim").join(plain(line) if isinstance(line, str) else line for line in lines))


def confusion_table(classes: list[str], matrix: list[list[int]]) -> Table:
    """A confusion matrix as a Rich table; the diagonal (correct answers) in bold green."""
    table = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("")
    for name in classes:
        table.add_column(plain(name), justify="right")
    for i, (name, row) in enumerate(zip(classes, matrix)):
        table.add_row(plain(name), *(plain(v, "bold green" if i == j else "") for j, v in enumerate(row)))
    return table
