"""The checkpoint browser: the runs in a folder, the details of one, and what to do with it.

The list comes from ``rundir.list_runs`` (config.toml and events.jsonl, never a checkpoint), so
it stays quick however large the models are, and it refreshes itself while runs train in other
processes. Whatever loads a checkpoint (details, evaluate, predict) runs in a thread worker, and
an engine error there becomes a message on screen, never a crash. ``engine.use.inference`` is
imported inside those workers: it imports torch, which would otherwise hold up the first frame.
"""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path
from typing import Any, Callable

from rich.cells import cell_len
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    Static,
    Tab,
    TabbedContent,
    TabPane,
    Tabs,
)
from textual.worker import Worker, WorkerState

from engine.errors import TorchdeckError
from engine.store import rundir
from engine.text import fmt, metrics_text
from tui.widgets import EpochTable, LossCurve, confusion_table

STATUS_STYLE = {"finished": "green", "stopped": "yellow", "failed": "red", "running": "bold cyan"}
COLUMNS = ("run", "task", "model", "epochs", "best", "status", "started")
RUN_ACTIONS = {"resume", "watch", "evaluate", "predict", "export", "delete"}


def _inference():
    """``engine.use.inference``, imported on first use, in a worker thread (it imports torch)."""
    from engine.use import inference

    return inference


def _date(timestamp: float | None) -> str:
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M") if timestamp else "?"


def _best_text(best: dict[str, Any]) -> str:
    return f"{best['monitor']} {fmt(best['value'])}" if best else "–"


def _status_text(run: dict[str, Any]) -> Text:
    return Text(run["status"], style=STATUS_STYLE.get(run["status"], ""))


def _row(run: dict[str, Any]) -> tuple[str | Text, ...]:
    """The cells of a run in the list, in the order of COLUMNS."""
    return (run["name"], run["task"], run["model"], f"{run['epochs_done']}/{run['epochs']}",
            _best_text(run["best"]), _status_text(run), _date(run["started"]))


class Jobs:
    """Thread workers for blocking engine calls, with their outcome handed back on the UI thread.

    ``job`` runs ``work`` in a thread and passes its result to ``done``, or the message of an
    engine error to ``failed`` (by default the screen's ``show_error``, which every screen using
    this mixin defines). Starting a job cancels the older one of its group, and closing a screen
    cancels its jobs; a cancelled job reports nothing, so a slow answer never overwrites a newer
    one or reaches a closed screen.
    """

    def job(self, work: Callable[[], Any], done: Callable[[Any], None], group: str,
            failed: Callable[[str], None] | None = None) -> Worker:
        def run() -> tuple[Callable[[Any], None], Any]:
            try:
                return done, work()
            except TorchdeckError as exc:
                return failed or self.show_error, str(exc)

        return self.run_worker(run, thread=True, exit_on_error=False, exclusive=True, group=group)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.SUCCESS:
            report, value = event.worker.result
            report(value)
        elif event.state == WorkerState.ERROR:  # an engine bug rather than bad input: still only a message
            error = event.worker.error
            self.show_error(f"{type(error).__name__}: {error}")


# --- dialogs ------------------------------------------------------------------------------


class Dialog(ModalScreen):
    """A box in the middle of the screen with an error line; escape closes it without an answer."""

    DEFAULT_CSS = """
    Dialog { align: center middle; }
    Dialog > Vertical {
        width: 90; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    Dialog .title { text-style: bold; color: $primary; margin-bottom: 1; }
    Dialog #error { color: $error; height: auto; }
    Dialog .buttons { height: auto; align-horizontal: right; }
    Dialog .buttons Button { margin-left: 2; }
    Dialog VerticalScroll { height: auto; max-height: 1fr; }
    """
    BINDINGS = [Binding("escape", "dismiss", "close")]

    def show_error(self, text: str) -> None:
        self.query_one("#error", Static).update(Text(text))  # plain text: a path or '.[onnx]' is not markup


class ConfirmDialog(Dialog):
    """A yes/no question; "cancel" has the focus, so a stray Enter changes nothing."""

    AUTO_FOCUS = "#no"

    def __init__(self, title: str, question: str, confirm: str) -> None:
        super().__init__()
        self.title_text, self.question, self.confirm = title, question, confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield Static(self.question)
            with Horizontal(classes="buttons"):
                yield Button(self.confirm, variant="error", id="yes")
                yield Button("cancel", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class AskDialog(Dialog):
    """One typed value, checked by ``parse`` before the dialog closes; its complaint shows inline.

    ``parse`` turns the text into the answer or raises ValueError with a message for the user.
    """

    AUTO_FOCUS = "Input"

    def __init__(self, title: str, prompt: str, value: str, parse: Callable[[str], Any]) -> None:
        super().__init__()
        self.title_text, self.prompt, self.value, self.parse = title, prompt, value, parse

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            yield Label(self.prompt)
            yield Input(self.value)
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("ok", variant="primary", id="ok")
                yield Button("cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def submit(self) -> None:
        try:
            answer = self.parse(self.query_one(Input).value.strip())
        except ValueError as exc:
            self.show_error(str(exc))
        else:
            self.dismiss(answer)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)


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


class RunDialog(Jobs, Dialog):
    """A dialog about one saved run: loads its best checkpoint in a worker, then calls ``ready``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.saved = None  # the engine's SavedRun, once loaded

    def on_mount(self) -> None:
        self.job(lambda: _inference().load(self.run_dir), self._loaded, "load")

    def _loaded(self, saved) -> None:
        self.saved = saved
        self.ready()


class EvaluateDialog(RunDialog):
    """Loss, metrics, confusion matrix and classification report on a split (test first)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.split = "test"
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"evaluate {self.run_dir.name}", classes="title")
            yield Tabs(Tab("test", id="test"), Tab("validation", id="val"), Tab("train", id="train"))
            with VerticalScroll():
                yield Static("loading the checkpoint…", id="result")
            yield Static(id="error")
        yield Footer()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        self.split = event.tab.id
        self.evaluate()

    def ready(self) -> None:
        self.evaluate()

    def evaluate(self) -> None:
        if self.saved is None:
            return
        saved, split = self.saved, self.split
        self.show_error("")
        self.query_one("#result", Static).update(f"evaluating on the {split} split…")
        self.job(lambda: _inference().evaluate(saved, split), self._show, "evaluate")

    def _show(self, result: dict[str, Any]) -> None:
        self.result = result
        self.query_one("#result", Static).update(_evaluation(result))


def _evaluation(result: dict[str, Any]) -> RenderableType:
    head = Text(f"{Path(result['path']).name} on the {result['split']} split ({result['samples']} samples)",
                style="bold")
    scores = Text(f"loss {fmt(result['loss'])}  {metrics_text(result['metrics'])}")
    if "confusion_matrix" not in result:
        return Group(head, scores)
    tables = [confusion_table(result["classes"], result["confusion_matrix"]), _report_table(result["report"])]
    return Group(head, scores, Text(), Columns(tables, padding=(0, 2)))


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title="classification report", title_justify="left")
    table.add_column("")
    for column in ("precision", "recall", "f1-score", "support"):
        table.add_column(column, justify="right")
    for name, scores in report.items():
        if isinstance(scores, dict):  # the report's plain "accuracy" number is already in the metrics
            table.add_row(name, fmt(scores["precision"]), fmt(scores["recall"]), fmt(scores["f1-score"]),
                          str(int(scores["support"])))
    return table


class PredictDialog(RunDialog):
    """Predict one sample: comma-separated feature values in training order, or an image's path."""

    AUTO_FOCUS = "Input"

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.prediction: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"predict with {self.run_dir.name}", classes="title")
            yield Static("loading the checkpoint…", id="features")
            yield Input(placeholder="feature values, comma-separated")
            yield Static(id="prediction")
            yield Static(id="error")
        yield Footer()

    def ready(self) -> None:
        meta = self.saved.meta
        if meta.image_mode is not None:
            channels, height, width = meta.input_shape
            self.query_one("#features", Static).update(
                f"the path of an image file (any common format; it is converted to "
                f"{'grayscale' if meta.image_mode == 'L' else 'RGB'} {width}×{height}, as in training)")
            self.query_one(Input).placeholder = "path/to/image.png"
            return
        names = meta.feature_names
        features = f"{len(names)} features, in this order: {', '.join(names)}"
        self.query_one("#features", Static).update(features)

    @on(Input.Submitted)
    def predict(self, event: Input.Submitted) -> None:
        if self.saved is None:
            return
        saved, text = self.saved, event.value
        self.show_error("")

        def work() -> dict[str, Any]:
            inference = _inference()
            if saved.meta.image_mode is not None:
                return inference.predict_images(saved, [text.strip()], top_k=5)[0]
            return inference.predict(saved, inference.parse_rows([text], saved.meta), top_k=5)[0]

        self.job(work, self._show, "predict")

    def _show(self, prediction: dict[str, Any]) -> None:
        self.prediction = prediction
        self.query_one("#prediction", Static).update(_prediction(prediction))


def _prediction(item: dict[str, Any]) -> RenderableType:
    if "value" in item:
        return Text.assemble("prediction ", (fmt(item["value"]), "bold"))
    table = Table.grid(padding=(0, 2))
    for rank, top in enumerate(item["top"]):
        bar = "█" * round(top["probability"] * 30)
        table.add_row(Text(top["class"], style="bold" if rank == 0 else ""), f"{top['probability']:6.1%}",
                      Text(bar, style="green" if rank == 0 else "dim"))
    return table


class ExportDialog(RunDialog):
    """Export the model in a format picked with a button; the files written and the check show below.

    ``engine.use.export`` verifies the file before keeping it, so what shows here has been loaded
    back and compared with the checkpoint's model.
    """

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"export {self.run_dir.name}", classes="title")
            yield Static("loading the checkpoint…", id="about")
            yield Horizontal(id="formats", classes="buttons")
            yield Static(id="result")
            yield Static(id="error")
        yield Footer()

    def ready(self) -> None:
        """Offer the formats once the checkpoint is loaded (which imported torch, so this import is quick)."""
        formats = _exporter().FORMATS
        about = Text(f"{self.saved.path.name} (epoch {self.saved.state.get('epoch')}) as a file that runs without "
                     f"torchdeck, with a .json sidecar on preparing inputs and reading outputs:\n")
        for spec in formats.values():
            about.append(f"\n{spec.name:<13}", style="bold").append(spec.description)
        self.query_one("#about", Static).update(about)
        buttons = [Button(name, id=name) for name in formats]
        self.query_one("#formats").mount(*buttons)
        buttons[0].focus()

    @on(Button.Pressed)
    def export_as(self, event: Button.Pressed) -> None:
        saved, name = self.saved, event.button.id
        self.show_error("")
        self.query_one("#result", Static).update(f"exporting as {name} and checking it…")

        def work() -> dict[str, Any]:
            exporter = _exporter()
            try:
                return exporter.export(saved, name)
            except exporter.ExportFailed as exc:  # not bad input, but shown the same way: inline
                raise TorchdeckError(str(exc)) from exc

        self.job(work, self._show, "export", failed=self._failed)

    def _failed(self, problem: str) -> None:
        self.query_one("#result", Static).update("")
        self.query_one("#error", Static).update(Text(problem))  # plain text: '.[onnx]' is not markup

    def _show(self, result: dict[str, Any]) -> None:
        self.result = result
        self.query_one("#result", Static).update(_export_text(result))


def _exporter():
    """``engine.use.export``, imported on first use: it imports torch, which loading the checkpoint did first."""
    from engine.use import export

    return export


def _export_text(result: dict[str, Any]) -> Text:
    check = result["verification"]
    return Text.assemble(
        (result["format"], "bold"), f"  {result['path']}  {result['bytes'] / 1024:,.1f} KiB\n",
        f"sidecar  {result['sidecar']}\n",
        ("verified ", "green"), f"on {check['samples']} samples of {check['inputs']}: largest difference "
        f"{check['max_abs_diff']:.3g} (tolerance {check['tolerance']:.3g})",
    )


# --- the browser ----------------------------------------------------------------------------


def _heading(run: dict[str, Any]) -> Text:
    """The run in three lines: name and status, what it is and how far it got, why it failed."""
    text = Text.assemble((run["name"], "bold"), "  ", _status_text(run))
    if run["reason"]:
        text.append(f" ({run['reason']})")
    text.append(f" · started {_date(run['started'])}\n")
    facts = [f"task {run['task']}", f"model {run['model']}"]
    if run["parameters"]:
        facts.append(f"{run['parameters']:,} parameters")
    facts.append(f"epoch {run['epochs_done']}/{run['epochs']}")
    best = run["best"]
    facts.append(f"best {_best_text(best)} at epoch {best['epoch']}" if best else "no best epoch yet")
    text.append(" · ".join(facts))
    if run["message"]:
        text.append("\n" + run["message"], style="red")
    return text


def _checkpoint_text(info: dict[str, Any]) -> Text:
    """What only the checkpoint knows: when it was saved, the last epoch, the test scores, the data."""
    lines = [f"{Path(info['path']).name} saved {_date(info['saved_at'])} · step {info['global_step']}"]
    if info["last"]:
        last = info["last"]
        lines.append(f"last   train_loss {fmt(last['train_loss'])}  val_loss {fmt(last['val_loss'])}  "
                     f"{metrics_text(last['metrics'])}")
    if info["test"]:
        lines.append(f"test   {metrics_text(info['test'])}")
    lines.append(f"features  {', '.join(info['features'])}")
    if info["classes"]:
        lines.append(f"classes   {', '.join(info['classes'])}")
    return Text("\n".join(lines))


def _overview(run: dict[str, Any], detail: Text) -> RenderableType:
    config = Columns([Text.assemble((f"{key} ", "dim"), str(value)) for key, value in run["config"].items()],
                     padding=(0, 2))
    return Group(_heading(run), Text(), detail, Text(), Text("config", style="bold"), config)


def _checkpoint_tables(info: dict[str, Any]) -> RenderableType:
    """The model's layers and the run directory's files, side by side where they fit."""
    layers = Table(title="layers", title_justify="left")
    for column, justify in (("name", "left"), ("shape", "left"), ("parameters", "right")):
        layers.add_column(column, justify=justify)
    for layer in info["layers"]:
        layers.add_row(layer["name"], "×".join(map(str, layer["shape"])), f"{layer['parameters']:,}")
    layers.add_row(Text("total", style="bold"), "", Text(f"{info['parameters']:,}", style="bold"))
    files = Table(title="files", title_justify="left")
    files.add_column("name")
    files.add_column("bytes", justify="right")
    for name, size in info["files"].items():
        files.add_row(name, f"{size:,}")
    return Columns([layers, files], padding=(0, 2))


class BrowserScreen(Jobs, Screen):
    """Every run in a folder (newest first), the highlighted run's details, and actions on it.

    The screen never starts training itself: it asks the app to ``resume_run``, ``watch_run``
    or ``new_run``, and the app swaps the screen.
    """

    DEFAULT_CSS = """
    BrowserScreen #runs { height: 2fr; min-height: 4; }
    BrowserScreen TabbedContent { height: 3fr; }
    BrowserScreen ContentSwitcher { height: 1fr; }
    BrowserScreen TabPane { height: 1fr; padding: 0 1; }
    BrowserScreen EpochTable, BrowserScreen LossCurve { height: 1fr; }
    """
    BINDINGS = [
        Binding("r", "resume", "resume"),
        Binding("w", "watch", "watch"),
        Binding("e", "evaluate", "evaluate"),
        Binding("p", "predict", "predict"),
        Binding("x", "export", "export"),
        Binding("d", "delete", "delete"),
        Binding("n", "new_run", "new run"),
        Binding("o", "open_folder", "folder"),
    ]
    AUTO_FOCUS = "#runs"
    REFRESH_SECONDS = 3.0

    def __init__(self, out: Path, select: Path | None = None) -> None:
        super().__init__()
        self.out = Path(out)
        self.select = select.resolve() if select else None  # highlighted once the first listing arrives
        self.runs: dict[str, dict[str, Any]] = {}  # rundir.summary of each listed run, by row key
        self.listed: Path | None = None  # the folder those runs are in
        self.shown: dict[str, Any] | None = None  # the summary whose details are on screen
        self._listing: Worker | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        with TabbedContent():
            with TabPane("overview", id="overview"):
                with VerticalScroll():
                    yield Static(id="overview-text")
            with TabPane("epochs", id="epochs"):
                yield EpochTable()
            with TabPane("loss", id="loss"):
                yield LossCurve()
            with TabPane("checkpoint", id="checkpoint"):
                with VerticalScroll():
                    yield Static(id="checkpoint-text")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.REFRESH_SECONDS, self._poll)

    def show_error(self, text: str) -> None:
        self.notify(text, severity="error", timeout=8, markup=False)

    # --- the list -----------------------------------------------------------------------

    def reload(self) -> None:
        """List the folder again, in a worker: a folder can hold many runs."""
        folder = self.out
        self.sub_title = f"runs in {folder}"
        self._listing = self.job(lambda: (folder, rundir.list_runs(folder)), self._listed, "list")

    def _poll(self) -> None:
        """Keep the list current while runs train elsewhere; a listing under way is left to finish."""
        if self._listing is None or self._listing.is_finished:
            self.reload()

    def _listed(self, listing: tuple[Path, list[dict[str, Any]]]) -> None:
        folder, runs = listing
        if folder != self.out:  # an answer about the folder shown before
            return
        self.sub_title = f"runs in {folder} · {len(runs)}"
        fresh = {str(run["path"]): run for run in runs}
        if folder == self.listed and fresh == self.runs:
            return
        table = self.query_one("#runs", DataTable)
        keep = self._cursor_key()
        if self.select is not None:
            keep = next((key for key, run in fresh.items() if run["path"].resolve() == self.select), keep)
            self.select = None
        self.runs, self.listed = fresh, folder
        rows = {key: _row(run) for key, run in fresh.items()}
        # Widths are set here: an auto width settles only after the rows may have been drawn
        # (and cached) at the width of the header.
        table.clear(columns=True)
        for index, label in enumerate(COLUMNS):
            width = max([cell_len(label), *(cell_len(str(cells[index])) for cells in rows.values())])
            table.add_column(label, width=width)
        for key, cells in rows.items():
            table.add_row(*cells, key=key)
        if keep in fresh:
            table.move_cursor(row=table.get_row_index(keep))
        self._show(self._cursor_key())

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
        """Details of the run at ``key``: the summary at once, the checkpoint's part from a worker."""
        run = self.runs.get(key)
        if run is not None and run == self.shown:
            return
        self.shown = run
        self.refresh_bindings()
        self.query_one(EpochTable).show_history([])
        self.query_one(LossCurve).show_history([])
        self.query_one("#checkpoint-text", Static).update("")
        overview = self.query_one("#overview-text", Static)
        if run is None:
            overview.update(f"No runs in {self.out}: press n to start one, or o to open another folder.")
            return
        path = run["path"]
        if not any((path / name).is_file() for name in (rundir.LAST, rundir.BEST)):
            overview.update(_overview(run, Text("no checkpoint yet: one is written at the end of each epoch",
                                                style="dim")))
            return
        overview.update(_overview(run, Text("reading the checkpoint…", style="dim")))
        self.job(lambda: _inference().describe(path), lambda info: self._described(run, info), "details",
                 failed=lambda problem: self._described(run, problem))

    def _described(self, run: dict[str, Any], info: dict[str, Any] | str) -> None:
        """Fill in what ``inference.describe`` found, or the engine's reason it could not."""
        if run is not self.shown:
            return
        overview = self.query_one("#overview-text", Static)
        if isinstance(info, str):
            overview.update(_overview(run, Text(info, style="red")))
            return
        overview.update(_overview(run, _checkpoint_text(info)))
        self.query_one(EpochTable).show_history(info["history"], best_epoch=info["best"].get("epoch"))
        self.query_one(LossCurve).show_history(info["history"])
        self.query_one("#checkpoint-text", Static).update(_checkpoint_tables(info))

    # --- actions ------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Offer only what fits the highlighted run: watch while it trains, resume otherwise."""
        if action not in RUN_ACTIONS:
            return True
        if self.shown is None:
            return False
        running = self.shown["status"] == "running"
        return {"resume": not running, "watch": running}.get(action, True)

    def _checkpointed(self) -> Path | None:
        """The highlighted run's directory if it holds a checkpoint; otherwise say why it does not."""
        try:
            return rundir.locate(self.shown["path"])[1]
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
        if rundir.status(path) == "running":
            self.show_error(f"{path.name} is still training; stop it before deleting it")
            return

        def delete(confirmed: bool | None) -> None:
            if confirmed:
                self._delete(path)

        question = f"Delete the run folder {path} with its checkpoints and logs? This cannot be undone."
        self.app.push_screen(ConfirmDialog(f"delete {path.name}", question, "delete"), delete)

    def _delete(self, path: Path) -> None:
        try:
            shutil.rmtree(path)
        except OSError as exc:
            self.show_error(f"cannot delete {path}: {exc.strerror}")
        else:
            self.notify(f"deleted {path}")
        self.reload()

    def action_new_run(self) -> None:
        self.app.new_run()

    def action_open_folder(self) -> None:
        def open_folder(folder: Path | None) -> None:
            if folder is not None:
                self.out = folder
                self.reload()

        self.app.push_screen(AskDialog("open a folder", "Folder that holds the run directories:",
                                       str(self.out), _folder), open_folder)
