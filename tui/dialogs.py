"""The browser's dialogs: a yes/no question, one typed value, and evaluate, predict and export
on a saved run.

A run dialog opens at once and loads the run's best checkpoint in a job (``tui.background``);
it fills itself in once the checkpoint is there, and a problem shows on its error line. The
``engine.use`` modules are imported inside the jobs: they import torch, which would otherwise
hold up the dialog's first frame. Titles, paths and names are shown as text, never as markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static, Tab, Tabs
from textual.worker import Worker

from engine.errors import TorchdeckError
from engine.text import fmt, metrics_text
from tui.background import answer, failure, in_thread
from tui.widgets import confusion_table, plain


def _title(text: str) -> Label:
    return Label(plain(text), classes="title")


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
        self.query_one("#error", Static).update(plain(text))  # a path or '.[onnx]' is not markup


class ConfirmDialog(Dialog):
    """A yes/no question; "cancel" has the focus, so a stray Enter changes nothing."""

    AUTO_FOCUS = "#no"

    def __init__(self, title: str, question: str, confirm: str) -> None:
        super().__init__()
        self.title_text, self.question, self.confirm = title, question, confirm

    def compose(self) -> ComposeResult:
        with Vertical():
            yield _title(self.title_text)
            yield Static(plain(self.question))
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
            yield _title(self.title_text)
            yield Label(plain(self.prompt))
            yield Input(self.value)
            yield Static(id="error")
            with Horizontal(classes="buttons"):
                yield Button("ok", variant="primary", id="ok")
                yield Button("cancel", id="cancel")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def submit(self) -> None:
        try:
            parsed = self.parse(self.query_one(Input).value.strip())
        except ValueError as exc:
            self.show_error(str(exc))
        else:
            self.dismiss(parsed)

    @on(Button.Pressed, "#cancel")
    def cancel(self) -> None:
        self.dismiss(None)


class RunDialog(Dialog):
    """A dialog about one saved run: loads its best checkpoint in a job, then calls ``ready``."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.saved = None  # the engine's SavedRun, once loaded

    def on_mount(self) -> None:
        self.load_checkpoint()

    @in_thread("load")
    def load_checkpoint(self) -> None:
        from engine.use.saved import load

        answer(self._loaded, load(self.run_dir))

    def _loaded(self, saved) -> None:
        self.saved = saved
        self.ready()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (problem := failure(event)) is not None:
            self.show_error(problem)

    def show_error(self, text: str) -> None:
        """A problem takes the last answer (or its "working…" line) away, so only the reason
        shows, never an old result that reads as the answer to what was just asked."""
        if text:
            self.show_answer("")
        super().show_error(text)

    def show_answer(self, answer: RenderableType) -> None:
        self.query_one(".answer", Static).update(answer)


class EvaluateDialog(RunDialog):
    """Loss, metrics, confusion matrix and classification report on a split (test first)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(run_dir)
        self.split = "test"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield _title(f"evaluate {self.run_dir.name}")
            yield Tabs(Tab("test", id="test"), Tab("validation", id="val"), Tab("train", id="train"))
            with VerticalScroll():
                yield Static("loading the checkpoint…", id="result", classes="answer")
            yield Static(id="error")
        yield Footer()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        self.split = event.tab.id
        self.ready()

    def ready(self) -> None:
        """Evaluate on the chosen split: once the checkpoint is loaded, and on each tab picked."""
        if self.saved is None:
            return
        self.show_error("")
        self.show_answer(f"evaluating on the {self.split} split…")
        self.evaluate(self.saved, self.split)

    @in_thread("evaluate")
    def evaluate(self, saved, split: str) -> None:
        from engine.use.evaluate import evaluate

        answer(self._show, evaluate(saved, split))

    def _show(self, result: dict[str, Any]) -> None:
        self.show_answer(_evaluation(result))


def _evaluation(result: dict[str, Any]) -> RenderableType:
    head = plain(f"{Path(result['path']).name} on the {result['split']} split ({result['samples']} samples)",
                 "bold")
    scores = Text(f"loss {fmt(result['loss'])}  {metrics_text(result['metrics'])}")
    if "confusion_matrix" not in result:
        return Group(head, scores)
    tables = [confusion_table(result["classes"], result["confusion_matrix"]), _report_table(result["report"])]
    return Group(head, scores, Text(), Columns(tables, padding=(0, 2)))


def _report_table(report: dict[str, Any]) -> Table:
    table = Table(title="classification report", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    for column in ("precision", "recall", "f1-score", "support"):
        table.add_column(column, justify="right")
    for name, scores in report.items():
        if isinstance(scores, dict):  # the report's plain "accuracy" number is already in the metrics
            table.add_row(plain(name), fmt(scores["precision"]), fmt(scores["recall"]), fmt(scores["f1-score"]),
                          str(int(scores["support"])))
    return table


class PredictDialog(RunDialog):
    """Predict one sample: comma-separated feature values in training order, or an image's path."""

    AUTO_FOCUS = "Input"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield _title(f"predict with {self.run_dir.name}")
            yield Static("loading the checkpoint…", id="features")
            yield Input(placeholder="feature values, comma-separated")
            yield Static(id="prediction", classes="answer")
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
        self.query_one("#features", Static).update(plain(features))  # column names are data, not markup

    @on(Input.Submitted)
    def submit(self, event: Input.Submitted) -> None:
        """Predict what was typed; an empty field is refused (an image path of "" would mean ".")."""
        if self.saved is None:
            return
        if not event.value.strip():
            what = "an image's path" if self.saved.meta.image_mode is not None else "the feature values"
            self.show_error(f"type {what} first")
            return
        self.show_error("")
        self.show_answer(Text("predicting…", style="dim"))
        self.predict(self.saved, event.value)

    @in_thread("predict")
    def predict(self, saved, text: str) -> None:
        from engine.use.predict import parse_rows, predict, predict_images

        if saved.meta.image_mode is not None:
            prediction = predict_images(saved, [text.strip()], top_k=5)[0]
        else:
            prediction = predict(saved, parse_rows([text], saved.meta), top_k=5)[0]
        answer(self._show, prediction)

    def _show(self, prediction: dict[str, Any]) -> None:
        self.show_answer(_prediction(prediction))


def _prediction(item: dict[str, Any]) -> RenderableType:
    if "value" in item:
        return Text.assemble("prediction ", (fmt(item["value"]), "bold"))
    table = Table.grid(padding=(0, 2))
    for rank, top in enumerate(item["top"]):
        bar = "█" * round(top["probability"] * 30)
        table.add_row(plain(top["class"], "bold" if rank == 0 else ""), f"{top['probability']:6.1%}",
                      Text(bar, style="green" if rank == 0 else "dim"))
    return table


class ExportDialog(RunDialog):
    """Export the model in a format picked with a button; the files written and the check show below.

    ``engine.use.export`` verifies the file before keeping it, so what shows here has been loaded
    back and compared with the checkpoint's model.
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield _title(f"export {self.run_dir.name}")
            yield Static("loading the checkpoint…", id="about")
            yield Horizontal(id="formats", classes="buttons")
            yield Static(id="result", classes="answer")
            yield Static(id="error")
        yield Footer()

    def ready(self) -> None:
        """Offer the formats once the checkpoint is loaded (which imported torch, so this import is quick)."""
        from engine.use.export import FORMATS

        about = Text.assemble(plain(self.saved.path.name), f" (epoch {self.saved.state.get('epoch')}) as a file that "
                              "runs without torchdeck, with a .json sidecar on preparing inputs and reading outputs:\n")
        for spec in FORMATS.values():
            about.append(f"\n{spec.name:<13}", style="bold").append(spec.description)
        self.query_one("#about", Static).update(about)
        buttons = [Button(name, id=name) for name in FORMATS]
        self.query_one("#formats").mount(*buttons)
        buttons[0].focus()

    @on(Button.Pressed)
    def export_as(self, event: Button.Pressed) -> None:
        self.show_error("")
        self.show_answer(f"exporting as {event.button.id} and checking it…")
        self.export(self.saved, event.button.id)

    @in_thread("export")
    def export(self, saved, name: str) -> None:
        from engine.use.export import ExportFailed, export

        try:
            result = export(saved, name)
        except ExportFailed as exc:  # not bad input, but shown the same way: inline
            raise TorchdeckError(str(exc)) from exc
        answer(self._show, result)

    def _show(self, result: dict[str, Any]) -> None:
        self.show_answer(_export_text(result))


def _export_text(result: dict[str, Any]) -> Text:
    check = result["verification"]
    return Text.assemble(
        (result["format"], "bold"), "  ", plain(result["path"]), f"  {result['bytes'] / 1024:,.1f} KiB\n",
        "sidecar  ", plain(result["sidecar"]), "\n",
        ("verified ", "green"), f"on {check['samples']} samples of {check['inputs']}: largest difference "
        f"{check['max_abs_diff']:.3g} (tolerance {check['tolerance']:.3g})",
    )
