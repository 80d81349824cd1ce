"""The live dashboard: progress, epoch table, loss curve, device, log, and the result.

The screen gets a *source factory*: a function that prepares a run (loading data, building the
model: slow, and the place where bad input surfaces) and returns a :class:`tui.sources.LiveRun`
or :class:`tui.sources.WatchedRun`. The factory runs in a job (``tui.background``); the source
is started once the screen is drawn and then polled on a timer in the app's event loop, so no
widget is ever touched from the training thread, the UI never waits on training, and a burst
of events costs one redraw.
"""

from __future__ import annotations

from typing import Callable

from rich.console import Group
from rich.markup import escape
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, Footer, Header, Label, ProgressBar, RichLog, Static
from textual.worker import Worker

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
from tui.background import answer, failure, in_thread
from tui.widgets import DevicePanel, EpochTable, LossCurve, confusion_table, plain

POLL_SECONDS = 0.25


def literal(text: str) -> str:
    """A run's text to embed in the log's and the end panel's markup: a path, a class or a range
    such as [0, 1) stays text, and its control characters are escaped."""
    return escape(printable(text))


def _coalesce_key(event: Event) -> str | None:
    if isinstance(event, BatchProgress):
        return "batch"
    if isinstance(event, CheckpointSaved):
        return f"checkpoint-{event.kind}"
    return None


class ConfirmQuit(ModalScreen[bool]):
    """Asked when ``q`` is pressed while a run is training."""

    DEFAULT_CSS = """
    ConfirmQuit { align: center middle; }
    ConfirmQuit > Vertical { width: 60; height: auto; border: thick $warning; padding: 1 2; background: $surface; }
    ConfirmQuit Horizontal { height: auto; margin-top: 1; }
    ConfirmQuit Button { margin-right: 2; }
    """
    BINDINGS = [Binding("y", "answer(True)", "stop and quit"), Binding("n,escape", "answer(False)", "keep training")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("A run is training. Stop it (saving last.pt) and quit?")
            with Horizontal():
                yield Button("Stop and quit (y)", variant="warning", id="yes")
                yield Button("Keep training (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class DashboardScreen(Screen):
    """Watch one run: live while it trains here, or followed from its run directory."""

    DEFAULT_CSS = """
    DashboardScreen { layout: vertical; }
    #summary { height: auto; padding: 0 1; color: $text-muted; }
    #progress { height: auto; padding: 0 1; }
    #progress Label { width: 1fr; height: 1; }
    #progress ProgressBar { width: 1fr; }
    #progress Bar { width: 1fr; }
    #middle { height: 1fr; min-height: 10; }
    #curve { width: 2fr; }
    #side { width: 1fr; min-width: 30; }
    #device { height: auto; border: round $primary; padding: 0 1; }
    #log { height: 1fr; border: round $primary; }
    #epochs { height: 1fr; min-height: 6; }
    #result { height: auto; max-height: 60%; border: round $success; padding: 0 1; display: none; overflow-y: auto; }
    #result.failed { border: round $error; }
    """
    BINDINGS = [
        Binding("p", "pause", "pause/resume"),
        Binding("s", "stop", "stop"),
        Binding("e", "evaluate", "evaluate on test"),
        Binding("b", "browse", "browser"),
        Binding("n", "new_run", "new run"),
        Binding("q", "quit_dashboard", "quit"),
    ]

    def __init__(self, source_factory: Callable[[], object], config=None) -> None:
        super().__init__()
        self.source_factory = source_factory
        self.config = config
        self.source = None
        self.run_dir = None
        self.started: RunStarted | None = None
        self.ended: Event | None = None
        self.quitting = False
        self.result_text = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("preparing the run…", id="summary")
        with Vertical(id="progress"):
            yield Label("epoch", id="epoch-label")
            yield ProgressBar(id="epoch-bar", show_eta=False)
            yield Label("overall", id="overall-label")
            yield ProgressBar(id="overall-bar", show_eta=True)
        with Horizontal(id="middle"):
            yield LossCurve(id="curve")
            with Vertical(id="side"):
                yield DevicePanel("", id="device")
                yield RichLog(id="log", wrap=True, markup=True)
        yield EpochTable(id="epochs")
        yield Static(id="result")
        yield Footer()

    def on_mount(self) -> None:
        self.log_line("preparing the run (loading data, building the model)…")
        self.prepare()

    def on_unmount(self) -> None:
        """Leaving (or the app closing) never leaves a training thread behind."""
        if self._live():
            self.source.control.stop("the dashboard closed")
            self.source.run.wait()

    # --- preparation and the event loop ------------------------------------------------------

    @in_thread("prepare")
    def prepare(self) -> None:
        answer(self.follow, self.source_factory())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A run that cannot be prepared has failed; an evaluation that fails is only noted in the log."""
        if (problem := failure(event)) is None:
            return
        if event.worker.group == "prepare":
            self.show_failure(problem)
        else:
            self.log_line(f"[red]evaluation failed: {literal(problem)}[/]")

    def follow(self, source) -> None:
        self.source = source
        self.run_dir = source.run_dir
        # Training starts once the screen is drawn: the first paint (styles, layout, the plot) is
        # the app's costliest moment, and sharing the interpreter with it slows the first epochs.
        self.call_after_refresh(self.begin)

    def begin(self) -> None:
        self.source.start()
        self.poller = self.set_interval(POLL_SECONDS, self.poll)

    def poll(self) -> None:
        """Apply the events that arrived since the last tick.

        Of the frequent kinds (batch progress, each kind of checkpoint) only the newest of a
        tick is shown: the older ones would be overwritten before anyone could read them.
        """
        events = self.source.poll()
        newest = {_coalesce_key(event): index for index, event in enumerate(events)}
        for index, event in enumerate(events):
            key = _coalesce_key(event)
            if key is None or newest[key] == index:
                self.handle(event)
        if self.ended is not None:
            self.poller.stop()
            self.query_one(EpochTable).flush()

    def handle(self, event: Event) -> None:
        if isinstance(event, BatchProgress):
            self.on_batch(event)
        elif isinstance(event, EpochEnded):
            self.on_epoch(event)
        elif isinstance(event, RunStarted):
            self.on_started(event)
        elif isinstance(event, CheckpointSaved):
            if event.kind == "best":
                self.log_line(f"best.pt saved (epoch {event.epoch})")
        elif isinstance(event, Message):
            self.log_line(literal(event.text) if event.level == "info" else f"[yellow]{literal(event.text)}[/]")
        elif isinstance(event, RunFinished):
            self.on_finished(event)
        elif isinstance(event, RunStopped):
            self.on_stopped(event)
        elif isinstance(event, RunFailed):
            self.show_failure(event.message)

    # --- event handlers ------------------------------------------------------------------------

    def on_started(self, event: RunStarted) -> None:
        self.started = event
        self.run_dir = event.run_dir
        self.sub_title = printable(event.run_dir)
        self.query_one("#summary", Static).update(plain(started_text(event)))
        self.query_one("#epoch-bar", ProgressBar).update(total=event.batches, progress=0)
        self.query_one("#overall-bar", ProgressBar).update(
            total=event.epochs * event.batches, progress=event.start_epoch * event.batches)
        self.query_one("#overall-label", Label).update(f"overall · {event.epochs} epochs")
        device = {"device": event.device, "name": event.device_name, "torch": event.versions.get("torch", "?"),
                  "processes": event.world_size}
        self.query_one(DevicePanel).show(device, local=self.source.control is not None)
        verb = "resumed" if event.resumed_from else "started"
        self.log_line(f"run {verb}: {literal(event.run_dir)}")
        if event.resumed_from:
            self.log_line(f"from {literal(event.resumed_from)}, after epoch {event.start_epoch}")
            history = self.source.earlier_epochs(event.start_epoch)
            self.query_one(EpochTable).show_history(history)
            self.query_one(LossCurve).show_history(history)

    def on_batch(self, event: BatchProgress) -> None:
        self.query_one("#epoch-label", Label).update(
            f"epoch {event.epoch}/{event.epochs} · batch {event.batch}/{event.batches} · loss {fmt(event.loss)} · "
            f"{event.samples_per_s:,.0f} samples/s · epoch ETA {event.eta_s:.1f}s",
            layout=False,  # one line, fixed height: no need to lay the screen out again
        )
        self.query_one("#epoch-bar", ProgressBar).update(total=event.batches, progress=event.batch)
        self.query_one("#overall-bar", ProgressBar).update(progress=(event.epoch - 1) * event.batches + event.batch)

    def on_epoch(self, event: EpochEnded) -> None:
        bar = self.query_one("#epoch-bar", ProgressBar)  # batch events come only every 0.1 s
        bar.update(progress=bar.total or 0)
        self.query_one("#overall-bar", ProgressBar).update(progress=event.epoch * (bar.total or 0))
        self.query_one(EpochTable).queue_epoch(event.to_dict(), improved=event.improved)
        self.query_one(LossCurve).add(event.train_loss, event.val_loss)

    def on_finished(self, event: RunFinished) -> None:
        self.ended = event
        text, run_dir = literal(finished_text(event)), literal(event.run_dir)
        self.log_line(f"[green]{text}[/]")
        self.show_result(
            f"[b green]{text}[/]\n"
            f"best.pt {run_dir}/best.pt\nlast.pt {run_dir}/last.pt\n"
            "[dim]e evaluate on test · b checkpoint browser · n new run · q quit[/]"
        )
        if "accuracy" in event.test:  # classifiers: show the confusion matrix too
            self.evaluate_best()

    def on_stopped(self, event: RunStopped) -> None:
        self.ended = event
        text = literal(stopped_text(event))
        self.log_line(f"[yellow]{text}[/]")
        self.show_result(f"[b yellow]stopped[/] {text}\n"
                         "[dim]b checkpoint browser (resume from there) · n new run · q quit[/]")
        if self.quitting:
            self.app.exit()

    def show_failure(self, message: str) -> None:
        self.ended = self.ended or RunFailed(message=message)
        message = literal(message)
        self.log_line(f"[red]run failed: {message}[/]")
        result = self.query_one("#result", Static)
        result.add_class("failed")
        self.show_result(f"[b red]The run failed[/]\n{message}\n[dim]n new run · b checkpoint browser · q quit[/]")

    def show_result(self, markup: str, *more) -> None:
        """The end-of-run panel: a summary, then any tables (the confusion matrix)."""
        self.result_text = markup
        result = self.query_one("#result", Static)
        result.update(Group(Text.from_markup(markup), *more))
        result.display = True

    def log_line(self, markup: str) -> None:
        self.query_one("#log", RichLog).write(markup)

    # --- evaluation at the end -------------------------------------------------------------------

    @in_thread("evaluate")
    def evaluate_best(self) -> None:
        from engine.use.evaluate import evaluate
        from engine.use.saved import load

        answer(self.show_evaluation, evaluate(load(self.run_dir), "test"))

    def show_evaluation(self, result: dict) -> None:
        summary = f"test ({result['samples']} samples): loss {fmt(result['loss'])}  {metrics_text(result['metrics'])}"
        self.log_line(summary)
        tables = [confusion_table(result["classes"], result["confusion_matrix"])] if "confusion_matrix" in result else []
        self.show_result(self.result_text, *tables)

    # --- keys --------------------------------------------------------------------------------------

    def _live(self) -> bool:
        return self.source is not None and self.source.control is not None and self.ended is None

    def action_pause(self) -> None:
        if not self._live():
            self.notify("no run is training here", severity="warning")
            return
        control = self.source.control
        control.resume() if control.paused else control.pause()

    def action_stop(self) -> None:
        if not self._live():
            self.notify("no run is training here", severity="warning")
            return
        self.log_line("stopping after the current batch…")
        self.source.control.stop("stopped from the dashboard")

    def action_evaluate(self) -> None:
        if isinstance(self.ended, (RunFinished, RunStopped)):
            self.evaluate_best()
        else:
            self.notify("evaluation is available once the run has ended", severity="warning")

    def action_browse(self) -> None:
        if self._live():
            self.notify("stop the run first (s), or wait for it to end", severity="warning")
            return
        self.app.open_browser(select=self.run_dir)

    def action_new_run(self) -> None:
        if self._live():
            self.notify("stop the run first (s), or wait for it to end", severity="warning")
            return
        self.app.new_run(self.config)

    def action_quit_dashboard(self) -> None:
        if not self._live():
            self.app.exit()
            return

        def answered(stop: bool | None) -> None:
            if stop and self._live():
                self.quitting = True
                self.log_line("stopping after the current batch, then quitting…")
                self.source.control.stop("stopped from the dashboard")
            elif stop:
                self.app.exit()

        self.app.push_screen(ConfirmQuit(), answered)
