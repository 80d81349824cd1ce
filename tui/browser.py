"""The checkpoint browser: the runs in a folder, the details of one, and what to do with it.

The list comes from ``runs.list_runs`` (config.toml and events.jsonl, never a checkpoint), so
it stays quick however large the models are, and it refreshes itself while runs train in other
processes. Listing, reading a checkpoint and deleting a run are jobs (``tui.background``), so
the screen never waits on the disk, and a problem there becomes a message, never a crash.
``engine.use.inspect`` is imported inside the details job: it imports torch, which would
otherwise hold up the first frame. The dialogs the actions open live in ``tui.dialogs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.cells import cell_len
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static, TabbedContent, TabPane
from textual.worker import Worker

from engine.errors import TorchdeckError
from engine.store import rundir, runs
from engine.text import printable
from tui.background import answer, failure, in_thread
from tui.compare import CompareScreen, Marks, relabel
from tui.dialogs import (
    AskDialog,
    ConfirmDialog,
    EvaluateDialog,
    ExportDialog,
    PredictDialog,
)
from tui.rundetails import (
    COLUMNS,
    NAME_WIDTH,
    checkpoint_tables,
    checkpoint_text,
    config_text,
    overview,
    row,
)
from tui.widgets import EpochTable, LossCurve, plain

RUN_ACTIONS = {"resume", "watch", "evaluate", "predict", "export", "delete", "tensors"}
CHECKPOINT_ACTIONS = {"resume", "evaluate", "predict", "export", "tensors"}  # offered once one is saved


def _more_epochs(done: int) -> Callable[[str], int]:
    """A parser for a new epoch total, which must go beyond the ``done`` epochs."""

    def parse(text: str) -> int:
        try:
            total = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if total <= done:
            raise ValueError(f"the run has done {done} epochs already; ask for a larger total")
        return total

    return parse


def _folder(text: str) -> Path:
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    return folder


class BrowserScreen(Screen):
    """Every run in a folder (newest first), the highlighted run's details, and actions on it.

    The screen never starts training itself: it asks the app to ``resume_run``, ``watch_run``
    or ``new_run``, and the app swaps the screen.
    """

    DEFAULT_CSS = """
    BrowserScreen #runs { height: auto; max-height: 40%; min-height: 3; }
    BrowserScreen TabbedContent { height: 1fr; min-height: 6; }
    BrowserScreen ContentSwitcher { height: 1fr; }
    BrowserScreen TabPane { height: 1fr; padding: 0 1; }
    BrowserScreen EpochTable, BrowserScreen LossCurve { height: 1fr; }
    BrowserScreen #overview-loss { width: 1fr; margin-left: 2; }
    BrowserScreen.-narrow #overview-loss, BrowserScreen.-short #overview-config { display: none; }
    BrowserScreen #overview-config { margin-top: 1; }
    """
    # A large terminal shows more at once: the loss beside the overview, the config below it.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    # Words short enough for every key that applies to fit an 80-column footer; the tooltips say more.
    BINDINGS = [
        Binding("r", "resume", "resume"),
        Binding("w", "watch", "watch"),
        Binding("e", "evaluate", "eval", tooltip="evaluate the best checkpoint on a split"),
        Binding("p", "predict", "predict"),
        Binding("x", "export", "export"),
        Binding("d", "delete", "delete"),
        Binding("space", "mark", "mark", show=False),  # the header says so: the footer is full at 80 columns
        Binding("c", "compare", "compare", tooltip="compare the marked runs"),
        Binding("n", "new_run", "new", tooltip="start a new run"),
        Binding("q", "app.leave", "quit"),  # before the keys an 80-column footer loses to "c compare (N)"
        Binding("o", "open_folder", "dir", tooltip="list the runs of another folder"),
        Binding("t", "tensors", "tensors", tooltip="the tensors of the run's checkpoint"),
        Binding("f", "app.ask_tensors", "file", tooltip="open any model file"),
        Binding("escape", "app.leave", "quit", show=False),
    ]
    AUTO_FOCUS = "#runs"
    REFRESH_SECONDS = 3.0

    def __init__(self, out: Path, select: Path | None = None) -> None:
        super().__init__()
        self.out = Path(out)
        self.select = select.resolve() if select else None  # highlighted once the first listing arrives
        self.runs: dict[str, dict[str, Any]] = {}  # runs.summary of each listed run, by row key
        self.listed: Path | None = None  # the folder those runs are in
        self.shown: dict[str, Any] | None = None  # the summary whose details are on screen
        self.saved = False  # whether that run has a checkpoint yet
        self._listing: Worker | None = None
        self.marks = Marks()  # the runs marked for a comparison

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        with TabbedContent():
            with TabPane("overview", id="overview"), Horizontal():
                with VerticalScroll():
                    yield Static(id="overview-text")
                    yield Static(id="overview-config")
                yield LossCurve(id="overview-loss")
            with TabPane("epochs", id="epochs"):
                yield EpochTable()
            with TabPane("loss", id="loss"):
                yield LossCurve()
            with TabPane("checkpoint", id="checkpoint"):
                with VerticalScroll():
                    yield Static(id="checkpoint-text")
            with TabPane("config", id="config"):
                with VerticalScroll():
                    yield Static(id="config-text")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.REFRESH_SECONDS, self._poll)

    def show_error(self, text: str) -> None:
        self.notify(printable(text), severity="error", timeout=8, markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (problem := failure(event)) is not None:
            self.show_error(problem)

    # --- the list -----------------------------------------------------------------------

    def reload(self) -> None:
        """List the folder again, in a job: a folder can hold many runs."""
        self.sub_title = printable(f"runs in {self.out}")
        self._listing = self.list_folder(self.out)

    @in_thread("list")
    def list_folder(self, folder: Path) -> None:
        answer(self._listed, folder, runs.list_runs(folder))

    def _poll(self) -> None:
        """Keep the list current while runs train elsewhere; a listing under way is left to finish."""
        if self._listing is None or self._listing.is_finished:
            self.reload()

    def _listed(self, folder: Path, found: list[dict[str, Any]]) -> None:
        if folder != self.out:  # an answer about the folder shown before
            return
        self._count(folder, len(found))
        fresh = {str(run["path"]): run for run in found}
        if folder == self.listed and fresh == self.runs:
            return
        keep = self._cursor_key()
        if self.select is not None:
            keep = next((key for key, run in fresh.items() if run["path"].resolve() == self.select), keep)
            self.select = None
        self.runs, self.listed = fresh, folder
        self.marks.keep(fresh)
        self._fill(keep)
        self._show(self._cursor_key())

    def _fill(self, keep: str | None) -> None:
        """The list's rows, each labelled with its mark, the cursor on ``keep``'s row if listed."""
        table = self.query_one("#runs", DataTable)
        rows = {key: row(run) for key, run in self.runs.items()}
        # Widths are set here: an auto width settles only after the rows may have been drawn
        # (and cached) at the width of the header.
        table.clear(columns=True)
        for index, label in enumerate(COLUMNS):
            width = max([cell_len(label), *(cell_len(str(cells[index])) for cells in rows.values())])
            table.add_column(label, width=min(width, NAME_WIDTH) if label == "run" else width)
        for key, cells in rows.items():
            table.add_row(*cells, key=key, label=self.marks.label(key))
        if keep in self.runs:
            table.move_cursor(row=table.get_row_index(keep))
        relabel(self, "c", f"compare ({len(self.marks)})")

    def _count(self, folder: Path, count: int) -> None:
        self.sub_title = printable(f"runs in {folder} · {count}") + self.marks.note()

    def _cursor_key(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    @on(DataTable.RowHighlighted, "#runs")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show(event.row_key.value)

    # --- the details --------------------------------------------------------------------

    def _show(self, key: str | None) -> None:
        """Details of the run at ``key``: the summary at once, the checkpoint's part from a job."""
        run = self.runs.get(key)
        if run is not None and run == self.shown:
            return
        self.shown = run
        self.saved = run is not None and any((run["path"] / name).is_file() for name in (rundir.LAST, rundir.BEST))
        self.refresh_bindings()
        self.query_one(EpochTable).show_history([])
        for curve in self.query(LossCurve):
            curve.show_history([])
        self.query_one("#checkpoint-text", Static).update("")
        for config in self.query("#config-text, #overview-config").results(Static):
            config.update(config_text(run) if run else "")
        details = self.query_one("#overview-text", Static)
        if run is None:
            details.update(plain(f"No runs in {self.out}: press n to start one, or o to open another folder."))
            return
        if not self.saved:
            details.update(overview(run, Text("no checkpoint yet: one is written at the end of each epoch",
                                              style="dim")))
            return
        details.update(overview(run, Text("reading the checkpoint…", style="dim")))
        self.describe(run)

    @in_thread("details")
    def describe(self, run: dict[str, Any]) -> None:
        from engine.use.inspect import describe

        try:
            info = describe(run["path"])
        except TorchdeckError as exc:  # a damaged checkpoint is part of the run's story, told in place
            info = str(exc)
        answer(self._described, run, info)

    def _described(self, run: dict[str, Any], info: dict[str, Any] | str) -> None:
        """Fill in what ``inspect.describe`` found, or the engine's reason it could not."""
        if run is not self.shown:
            return
        details = self.query_one("#overview-text", Static)
        if isinstance(info, str):
            details.update(overview(run, plain(info, "red")))
            return
        details.update(overview(run, checkpoint_text(info)))
        self.query_one(EpochTable).show_history(info["history"], best_epoch=info["best"].get("epoch"))
        for curve in self.query(LossCurve):
            curve.show_history(info["history"], best_epoch=info["best"].get("epoch"))
        self.query_one("#checkpoint-text", Static).update(checkpoint_tables(info))

    # --- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer only what fits the highlighted run: watch while it trains, resume otherwise, and
        what needs a checkpoint once it has one (the overview says when it will)."""
        if action in ("mark", "compare"):
            return self.marks.allows(action, self.shown is not None)
        if action not in RUN_ACTIONS:
            return True
        if self.shown is None or (action in CHECKPOINT_ACTIONS and not self.saved):
            return False
        running = self.shown["status"] == "running"
        return {"resume": not running, "watch": running}.get(action, True)

    def _checkpointed(self) -> Path | None:
        """The highlighted run's directory if it holds a checkpoint; otherwise say why it does not."""
        try:
            return runs.locate(self.shown["path"])[1]
        except TorchdeckError as exc:
            self.show_error(str(exc))
            return None

    def action_resume(self) -> None:
        run = self.shown
        path = self._checkpointed()
        if path is None:
            return
        if run["epochs_done"] < run["epochs"]:
            self.app.resume_run(path)
            return

        def resume(total: int | None) -> None:
            if total is not None:
                self.app.resume_run(path, epochs=total)

        ask = AskDialog(f"resume {run['name']}",
                        f"The run has completed its {run['epochs']} epochs. Train on to a total of:",
                        str(run["epochs"] * 2), _more_epochs(run["epochs_done"]))
        self.app.push_screen(ask, resume)

    def action_mark(self) -> None:
        """Mark the highlighted run (or unmark it) and move on to the next."""
        key = self._cursor_key()
        self.marks.toggle(key)
        table = self.query_one("#runs", DataTable)
        self._fill(key)
        self._count(self.listed, len(self.runs))
        table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        self.app.push_screen(CompareScreen([self.runs[key]["path"] for key in self.marks.keys]))

    def action_watch(self) -> None:
        self.app.watch_run(self.shown["path"])

    def action_evaluate(self) -> None:
        if path := self._checkpointed():
            self.app.push_screen(EvaluateDialog(path))

    def action_predict(self) -> None:
        if path := self._checkpointed():
            self.app.push_screen(PredictDialog(path))

    def action_export(self) -> None:
        if path := self._checkpointed():
            self.app.push_screen(ExportDialog(path))

    def action_delete(self) -> None:
        path = self.shown["path"]
        if runs.status(path) == "running":
            self.show_error(f"{path.name} is still training; stop it before deleting it")
            return

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                self.delete(path)

        question = f"Delete the run folder {path} with its checkpoints and logs? This cannot be undone."
        self.app.push_screen(ConfirmDialog(f"delete {path.name}", question, "delete"), delete)

    @in_thread("delete")
    def delete(self, path: Path) -> None:
        """Delete in a job: a run folder can hold large checkpoints. A run that started training
        since the question was asked holds its lock, and the refusal shows as an error."""
        runs.delete(path)
        answer(self._deleted, path)

    def _deleted(self, path: Path) -> None:
        self.notify(printable(f"deleted {path}"), markup=False)
        self.reload()

    def action_new_run(self) -> None:
        self.app.new_run()

    def action_tensors(self) -> None:
        self.app.open_tensors(self._checkpointed())

    def action_open_folder(self) -> None:
        def open_folder(folder: Path | None) -> None:
            if folder is not None:
                self.out = folder
                self.reload()

        self.app.push_screen(AskDialog("open a folder", "Folder that holds the run directories:",
                                       str(self.out), _folder), open_folder)
