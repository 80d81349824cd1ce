"""Widgets shared by the dashboard and the checkpoint browser, and ``plain``: how every name
and value from a run or its data is shown."""

from __future__ import annotations

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


class LossCurve(PlotextPlot):
    """Train and validation loss per epoch; redraws at most a few times a second."""

    def on_mount(self) -> None:
        self.train: list[float] = []
        self.val: list[float] = []
        self._dirty = False
        self.set_interval(1.0, self._redraw_if_dirty)  # plotting is costly: once a second is plenty
        self._draw()

    def add(self, train_loss: float, val_loss: float) -> None:
        self.train.append(train_loss)
        self.val.append(val_loss)
        self._dirty = True

    def show_history(self, history: Iterable[dict[str, Any]]) -> None:
        rows = list(history)
        self.train = [row["train_loss"] for row in rows]
        self.val = [row["val_loss"] for row in rows]
        self._draw()

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._draw()

    def _draw(self) -> None:
        self._dirty = False
        plt = self.plt
        plt.clear_data()
        plt.title("loss")
        plt.xlabel("epoch")
        if self.train:
            epochs = list(range(1, len(self.train) + 1))
            plt.plot(epochs, self.train, label="train", marker="braille")
            plt.plot(epochs, self.val, label="val", marker="braille")
        self.refresh()


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
    """Where the run trains: device name, GPU memory, CPU threads, process memory, torch.

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
        lines = [f"[b]{info['device']}[/b] · {info['name']}"]
        if info.get("processes", 1) > 1:  # a torchrun job: this is rank 0's view
            lines.append(f"{info['processes']} processes (data parallel), rank 0 shown")
        if "memory_total" in info:
            lines.append(f"GPU memory {gib(info['memory_used'])} / {gib(info['memory_total'])}")
        if self.local:
            lines.append(f"CPU threads {info['cpu_threads']} of {info['cpu_count']}")
            lines.append(f"process memory {gib(process_memory())}")
        lines.append(f"torch {info['torch']}")
        self.update("\n".join(lines))


def confusion_table(classes: list[str], matrix: list[list[int]]) -> Table:
    """A confusion matrix as a Rich table; the diagonal (correct answers) in bold green."""
    table = Table(title="confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("")
    for name in classes:
        table.add_column(plain(name), justify="right")
    for i, (name, row) in enumerate(zip(classes, matrix)):
        table.add_row(plain(name), *(plain(v, "bold green" if i == j else "") for j, v in enumerate(row)))
    return table
