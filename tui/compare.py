"""Runs side by side: the browser's marks, and the screen that compares the marked runs.

``engine.use.compare`` reads everything from config.toml and events.jsonl (never a checkpoint),
in a job, so opening a comparison is as quick as listing the runs. The screen overlays their
curves in one plot, a colour per run kept wherever the run appears (the legend line, the
table's run cell), and puts the options that differ beside their best and test metrics in one
table of runs that sorts on any column. Every name comes from a run folder: shown as text.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Iterable

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker
from textual_plotext import PlotextPlot

from engine.config import HIGHER_IS_BETTER
from engine.text import fmt, printable
from engine.use.compare import compare
from tui.background import answer, failure, in_thread
from tui.rundetails import NAME_WIDTH
from tui.widgets import SERIES_COLOURS, ChartViews, epoch_ticks, plain

Colour = tuple[int, int, int]
MARK = "✓"


class Marks:
    """The runs marked in the browser for a comparison (row keys, in the order marked).

    They outlive the list's refreshes, which rebuild its rows; a run that leaves the folder
    (deleted) leaves the marks with it."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def __len__(self) -> int:
        return len(self.keys)

    def toggle(self, key: str) -> None:
        self.keys.remove(key) if key in self.keys else self.keys.append(key)

    def keep(self, present: Iterable[str]) -> None:
        present = set(present)
        self.keys = [key for key in self.keys if key in present]

    def label(self, key: str) -> Text:
        """The row's label: a mark, or a blank of its width (so the rows stay aligned)."""
        return Text(MARK, style="bold green") if key in self.keys else Text(" ")

    def note(self) -> str:
        """What the list's header says of the marks (the footer has no room for the key at 80 columns)."""
        return f" · {len(self)} marked" if self else " · space marks runs to compare"

    def allows(self, action: str, highlighted: bool) -> bool:
        """Marking needs a run under the cursor; comparing, two marked runs."""
        return highlighted if action == "mark" else len(self) >= 2


def relabel(node: DOMNode, key: str, description: str) -> None:
    """Give ``key``'s binding on ``node`` a new description in the footer (a count that changes).

    Textual has no public call for it (Textualize/textual#4180); every node holds its own copy
    of its bindings map, so replacing the binding there changes only this node's footer."""
    bindings = node._bindings.key_to_bindings
    bindings[key] = [dataclasses.replace(binding, description=description) for binding in bindings[key]]
    node.refresh_bindings()


def colour_style(colour: Colour) -> str:
    return "bold rgb({},{},{})".format(*colour)


# --- the curves --------------------------------------------------------------------------------


class CompareCurve(ChartViews, PlotextPlot):
    """The runs' curves in one plot, each run its colour: the loss view draws validation as a
    thick line and training as a thin one, a metric view the validation metric. ``v`` cycles the views,
    ``l`` toggles a log axis (each view its own: a loss falls by decades, a metric does not)."""

    def on_mount(self) -> None:
        self.runs: list[tuple[str, Colour, list[dict[str, Any]]]] = []  # name, colour, history
        self.view = "loss"
        self.log_views = {"loss"}

    def show(self, runs: list[tuple[str, Colour, list[dict[str, Any]]]]) -> None:
        self.runs = runs
        if self.view not in self.views:
            self.view = "loss"
        self.refresh()

    @property
    def views(self) -> list[str]:
        """loss, then every metric some run recorded (in the order first met)."""
        metrics = {name: None for _, _, history in self.runs for row in history for name in row["metrics"]}
        return ["loss", *metrics]

    def lines(self) -> list[tuple[str, str]]:
        """The line kinds of the view: (name, plotext marker)."""
        return [("val", "hd"), ("train", "braille")] if self.view == "loss" else [(self.view, "hd")]

    def series(self) -> list[tuple[str, str, Colour, list[tuple[float, float]]]]:
        """The view's lines that have points: (run name, line, colour, finite (epoch, value) points)."""
        get: dict[str, Callable[[dict[str, Any]], Any]] = {
            "val": lambda row: row["val_loss"], "train": lambda row: row["train_loss"]}
        found = []
        for name, colour, history in self.runs:
            for line, _ in self.lines():
                value = get.get(line, lambda row: row["metrics"].get(line))
                points = [(row["epoch"], float(value(row))) for row in history
                          if isinstance(value(row), (int, float)) and math.isfinite(value(row))]
                if points:
                    found.append((name, line, colour, points))
        return found

    def render(self) -> Text:
        """Hand plotext this frame's data at each render: on a log axis plotext turns the data it
        holds into logarithms in place (a second build would take them again)."""
        plt = self.plt
        plt.clear_data()
        plt.xlabel("epoch" if self.size.height >= 12 else "")
        series = self.series()
        floor = min((y for *_, points in series for _, y in points if y > 0), default=1.0)
        log = self.log_y and bool(series)  # plotext's log axis needs data
        plt.yscale("log" if log else "linear")
        markers = dict(self.lines())
        for _, line, colour, points in series:
            ys = [max(y, floor) if log else y for _, y in points]
            plt.plot([x for x, _ in points], ys, marker=markers[line], color=colour)
        last = max((x for *_, points in series for x, _ in points), default=0)
        if last:
            ticks = epoch_ticks(int(last), self.size.width // 8)
            plt.xticks(ticks, [str(tick) for tick in ticks])
        what = "loss" if self.view == "loss" else f"validation {self.view}"
        plt.title(f"{what}{' (log)' if log else ''}" if series else f"{what}: no epoch has ended yet")
        return super().render()


def legend(runs: list[tuple[str, Colour, Any]], lines: list[tuple[str, str]]) -> Text:
    """The plot's key, outside its data: each run's name in its colour, then the line kinds."""
    text = Text()
    for name, colour, _ in runs:
        text.append("━ ", style=colour_style(colour)).append(plain(name)).append("  ")
    if len(lines) > 1:
        text.append("·  ", style="dim").append("  ".join(f"{'━' if marker == 'hd' else '┈'} {line}"
                                                         for line, marker in lines), style="dim")
    return text


# --- the table ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Column:
    """A column of the comparison table: its header, its cell and its sort key for each run."""

    key: str
    label: str
    value: Callable[[dict[str, Any]], Any]  # the raw value a run has here (None: none)
    cell: Callable[[dict[str, Any]], Text]
    descending: bool = False  # the natural order when sorted on it: best first for a metric


def option_text(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def columns(comparison: dict[str, Any], colours: dict[str, Colour]) -> list[Column]:
    """The run, the options that differ, the best metric and its epoch, the test metrics, the time."""
    ranked = {str(run["path"]): place for place, run in enumerate(comparison["runs"])}
    found = [Column("run", "run", lambda run: run["name"],
                    lambda run: Text.assemble(("━ ", colour_style(colours[str(run["path"])])), plain(run["name"])))]
    for option in comparison["differing"]:
        found.append(Column(f"option {option}", option, lambda run, o=option: run["options"].get(o),
                            lambda run, o=option: plain(option_text(run["options"].get(o)))))
    monitor = comparison["monitor"]

    def best(run: dict[str, Any]) -> Text:
        value = run["best"].get("value")
        if value is None:
            return Text("–")
        return plain(fmt(value) if monitor else f"{run['best']['monitor']} {fmt(value)}")

    # Runs that monitor different metrics: sorting on "best" keeps the engine's order (best first,
    # each run by its own monitor).
    found.append(Column("best", f"best\n{monitor}" if monitor else "best",
                        (lambda run: run["best"].get("value")) if monitor else (lambda run: ranked[str(run["path"])]),
                        best, descending=bool(monitor) and comparison["higher_is_better"]))
    found.append(Column("epoch", "at\nepoch", lambda run: run["best"].get("epoch"),
                        lambda run: plain(option_text(run["best"].get("epoch")))))
    tests = {name: None for run in comparison["runs"] for name in run.get("test") or {}}
    for name in tests:
        found.append(Column(f"test {name}", f"test\n{name}", lambda run, n=name: (run.get("test") or {}).get(n),
                            lambda run, n=name: plain(fmt((run.get("test") or {}).get(n))),
                            descending=name in HIGHER_IS_BETTER))
    if any(run.get("seconds") is not None for run in comparison["runs"]):
        found.append(Column("seconds", "time", lambda run: run.get("seconds"),
                            lambda run: plain(duration(run.get("seconds")))))
    return found


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m {seconds:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def sort_key(value: Any) -> tuple:
    """Numbers before words, and never a comparison of one with the other."""
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def ordered(runs: list[dict[str, Any]], column: Column, descending: bool) -> list[dict[str, Any]]:
    """``runs`` sorted on ``column``; runs without a value there last, whichever the direction."""
    having = [run for run in runs if column.value(run) is not None]
    lacking = [run for run in runs if column.value(run) is None]
    return sorted(having, key=lambda run: sort_key(column.value(run)), reverse=descending) + lacking


# --- the screen --------------------------------------------------------------------------------


class CompareScreen(Screen):
    """The marked runs compared: curves overlaid, the differing options and the scores in a
    sortable table (``s`` or a click on a header; a second click turns the order round)."""

    DEFAULT_CSS = """
    CompareScreen #legend { height: auto; padding: 0 1; }
    CompareScreen CompareCurve { height: 1fr; min-height: 8; }
    CompareScreen #table { height: auto; max-height: 45%; }
    CompareScreen #message { color: $error; padding: 0 1; height: auto; display: none; }
    """
    BINDINGS = [
        Binding("v", "view", "chart", tooltip="loss, or each validation metric"),
        Binding("l", "log_scale", "log y"),
        Binding("s", "sort", "sort", tooltip="sort the table on the next column"),
        Binding("q", "app.leave", "back"),
        Binding("escape", "app.leave", "back", show=False),
    ]
    AUTO_FOCUS = "#table"

    def __init__(self, paths: Iterable[str | Path]) -> None:
        super().__init__()
        self.paths = [Path(path) for path in paths]
        self.comparison: dict[str, Any] | None = None
        self.columns: list[Column] = []
        self.sorting: tuple[str, bool] = ("best", False)  # column key, descending (set once loaded)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("reading the runs…", style="dim"), id="legend")
        yield CompareCurve()
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True, header_height=2)
        yield Static(id="message")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"comparing {len(self.paths)} runs"
        self.load(self.paths)

    @in_thread("compare")
    def load(self, paths: list[Path]) -> None:
        answer(self._loaded, compare(paths))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (problem := failure(event)) is not None:
            self.query_one("#legend", Static).update("")
            message = self.query_one("#message", Static)
            message.update(plain(problem))
            message.display = True

    def _loaded(self, comparison: dict[str, Any]) -> None:
        self.comparison = comparison
        colours = {str(run["path"]): SERIES_COLOURS[place % len(SERIES_COLOURS)]
                   for place, run in enumerate(comparison["runs"])}
        self.columns = columns(comparison, colours)
        self.sorting = ("best", next(column.descending for column in self.columns if column.key == "best"))
        differing = ", ".join(comparison["differing"]) or "none"
        self.sub_title = printable(f"{len(comparison['runs'])} runs · options that differ: {differing}")
        curve = self.query_one(CompareCurve)
        curve.show([(run["name"], colours[str(run["path"])], run["history"]) for run in comparison["runs"]])
        self._legend()
        self._fill()

    def _legend(self) -> None:
        curve = self.query_one(CompareCurve)
        self.query_one("#legend", Static).update(legend(curve.runs, curve.lines()))

    def _fill(self) -> None:
        """The table in the current order, widths set from its cells, the cursor kept on its run."""
        if self.comparison is None:
            return
        table = self.query_one("#table", DataTable)
        keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value if table.row_count else None
        key, descending = self.sorting
        column = next(column for column in self.columns if column.key == key)
        runs = ordered(self.comparison["runs"], column, descending)
        table.clear(columns=True)
        for each in self.columns:
            arrow = ("▼" if descending else "▲") if each is column else ""
            label = Text(f"{each.label}{arrow}", style="bold" if arrow else "")
            cells = [each.cell(run) for run in runs]
            width = max(cell_len(line) for line in [*label.plain.split("\n"), *(cell.plain for cell in cells)])
            table.add_column(label, key=each.key, width=min(width, NAME_WIDTH + 2) if each.key == "run" else width)
        for run in runs:
            table.add_row(*(each.cell(run) for each in self.columns), key=str(run["path"]))
        if keep is not None:
            table.move_cursor(row=table.get_row_index(keep))

    def sort_on(self, key: str) -> None:
        """Sort on ``key``: in its natural order, or the other way round when sorted on it already."""
        column = next(column for column in self.columns if column.key == key)
        current, descending = self.sorting
        self.sorting = (key, not descending if key == current else column.descending)
        self._fill()

    @on(DataTable.HeaderSelected, "#table")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        self.sort_on(event.column_key.value)

    def action_sort(self) -> None:
        """Sort on the next column (after the last, the first again)."""
        if self.columns:
            keys = [column.key for column in self.columns]
            self.sort_on(keys[(keys.index(self.sorting[0]) + 1) % len(keys)])

    def action_view(self) -> None:
        self.query_one(CompareCurve).cycle_view()
        self._legend()

    def action_log_scale(self) -> None:
        self.query_one(CompareCurve).toggle_log()
