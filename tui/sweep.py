"""A sweep's live leaderboard: its trials, best first, read again every two seconds.

The study lives in the sweep folder's Optuna storage (engine.use.sweep), whoever runs it: this
process (``torchdeck sweep --tui``), another one, or nobody any more (a finished or killed
sweep opened with ``torchdeck browse SWEEP_DIR``). Reading it is a job (tui.background), so a
slow or locked database never holds up a key. Enter on a trial opens the run browser on the
sweep folder with that trial highlighted; each trial is a normal run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker

from engine.text import fmt, printable
from tui.background import answer, failure, in_thread
from tui.widgets import plain

STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "bold cyan"}
COLUMNS = ("trial", "state", "value", "options", "seconds")


def _row(trial: dict[str, Any]) -> tuple[Any, ...]:
    options = "  ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                        for name, value in trial["params"].items())
    seconds = trial.get("duration")
    return (str(trial["number"]), Text(trial["state"], style=STATE_STYLE.get(trial["state"], "")),
            fmt(trial["value"]) if trial["value"] is not None else "–", plain(options),
            f"{seconds:.1f}" if seconds is not None else "")


class SweepScreen(Screen):
    """The trials of the sweep in ``folder``, best first, refreshed while it runs."""

    DEFAULT_CSS = """
    SweepScreen #trials { height: 1fr; }
    SweepScreen #sweep-status { height: auto; padding: 0 1; }
    """
    BINDINGS = [Binding("enter", "open_trial", "open trial"), Binding("q", "app.leave", "quit"),
                Binding("escape", "app.leave", "quit", show=False)]
    REFRESH_SECONDS = 2.0

    def __init__(self, folder: str | Path, storage: str | None = None) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.storage = storage  # the study's database URL, when it is not the folder's study.db
        self.trials: list[dict[str, Any]] = []
        self._reading: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the study…", id="sweep-status")
        yield DataTable(id="trials", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(f"sweep {self.folder}")
        self.query_one(DataTable).add_columns(*COLUMNS)
        self.reload()
        self.set_interval(self.REFRESH_SECONDS, self._poll)

    def reload(self) -> None:
        self._reading = self.read(self.folder)

    def _poll(self) -> None:
        if self._reading is None or self._reading.is_finished:
            self.reload()

    @in_thread("study")
    def read(self, folder: Path) -> None:
        from engine.use.sweep import leaderboard

        answer(self._show, leaderboard(folder, storage=self.storage))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (problem := failure(event)) is not None:
            self.query_one("#sweep-status", Static).update(plain(problem, "red"))

    def _show(self, trials: list[dict[str, Any]]) -> None:
        if trials == self.trials:
            return
        self.trials = trials
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for trial in trials:
            table.add_row(*_row(trial), key=str(trial["number"]))
        if trials:
            table.move_cursor(row=min(keep, len(trials) - 1))
        self.query_one("#sweep-status", Static).update(plain(self._status(trials)))

    @staticmethod
    def _status(trials: list[dict[str, Any]]) -> str:
        counts: dict[str, int] = {}
        for trial in trials:
            counts[trial["state"]] = counts.get(trial["state"], 0) + 1
        done = " · ".join(f"{count} {state}" for state, count in counts.items()) or "no trials yet"
        best = next((t for t in trials if t["state"] == "complete" and t["value"] is not None), None)
        return f"{len(trials)} trials: {done}" + (f" · best trial {best['number']}: {fmt(best['value'])}" if best else "")

    @on(DataTable.RowSelected, "#trials")
    def _selected(self, event: DataTable.RowSelected) -> None:  # Enter on the table is the table's
        self.action_open_trial()

    def action_open_trial(self) -> None:
        table = self.query_one(DataTable)
        if not self.trials or table.cursor_row >= len(self.trials):
            return
        from tui.browser import BrowserScreen

        run_dir = self.trials[table.cursor_row].get("run_dir")
        self.app.push_screen(BrowserScreen(out=self.folder, select=Path(run_dir) if run_dir else None))
