"""The live dashboard: progress, chart, epoch table, device, log, and the result.

The layout follows the terminal: under 100 columns or 30 rows the screen is ``-compact`` (one
progress line, no log), over 150 columns ``-wide``; once the run ends (``-ended``) its result
takes the place of the live parts (progress, log), so at 80×24 the test scores and the
checkpoint paths are on screen without scrolling.

The screen gets a *source factory*: a function that prepares a run (loading data, building the
model: slow, and the place where bad input surfaces) and returns a :class:`tui.sources.LiveRun`
or :class:`tui.sources.WatchedRun`. The factory runs in a job (``tui.background``); the source
is started once the screen is drawn and then polled on a timer in the app's event loop, so no
widget is ever touched from the training thread, the UI never waits on training, and a burst
of events costs one redraw.
"""

from __future__ import annotations

from typing import Callable

from rich.markup import escape
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, RichLog, Static
from textual.worker import Worker

from engine.config import RunConfig
from engine.errors import TorchdeckError
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
from tui.endings import ConfirmQuit, tell_terminal
from tui.progress import ProgressLine
from tui.sources import newest_only
from tui.widgets import DevicePanel, EpochTable, LossCurve, confusion_table, plain

POLL_SECONDS = 0.25
COMPACT_BELOW = (100, 30)  # columns, rows: under either, one progress line and no log
WIDE_FROM = 150


def literal(text: str) -> str:
    """A run's text to embed in the log's and the end panel's markup: a path, a class or a range
    such as [0, 1) stays text, and its control characters are escaped."""
    return escape(printable(text))


class DashboardScreen(Screen):
    """Watch one run: live while it trains here, or followed from its run directory."""

    DEFAULT_CSS = """
    DashboardScreen { layout: vertical; }
    #summary { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    #progress { height: 2; padding: 0 1; }
    #result { height: auto; max-height: 50%; border: round $success; display: none; }
    #result.failed { border: round $error; }
    #result.stopped { border: round $warning; }
    #result-text { width: 1fr; height: auto; padding: 0 1; }
    #confusion { width: auto; max-width: 50%; height: auto; padding: 0 1; }
    #middle { height: 1fr; min-height: 6; }
    #curve { width: 2fr; }
    #log { width: 1fr; min-width: 30; border: round $primary; }
    #epochs { height: 1fr; min-height: 4; }
    #device { height: 1; padding: 0 1; color: $text-muted; }
    DashboardScreen.-wide #middle { height: 3fr; }
    DashboardScreen.-wide #epochs { height: 2fr; }
    DashboardScreen.-ended #progress, DashboardScreen.-ended #log { display: none; }
    DashboardScreen.-ended #result { display: block; }
    DashboardScreen.-compact #summary { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    DashboardScreen.-compact #progress { height: 1; }
    DashboardScreen.-compact #log { display: none; }
    DashboardScreen.-compact #middle { height: 2fr; min-height: 6; }
    DashboardScreen.-short Header { display: none; }
    DashboardScreen.-compact #epochs { height: 1fr; max-height: 7; min-height: 3; }
    DashboardScreen.-compact #result { border: none; border-left: outer $success; max-height: 60%; }
    DashboardScreen.-compact #result.failed { border-left: outer $error; }
    DashboardScreen.-compact #result.stopped { border-left: outer $warning; }
    """
    # What applies now is decided in check_action: the footer shows only those keys.
    BINDINGS = [
        Binding("p", "pause", "pause"),
        Binding("p", "resume", "resume"),
        Binding("s", "stop", "stop"),
        Binding("e", "evaluate", "evaluate"),
        Binding("b", "browse", "runs"),
        Binding("n", "new_run", "new run"),
        Binding("q", "quit_dashboard", "quit"),
        Binding("escape", "quit_dashboard", "quit", show=False),
        Binding("v", "chart_view", "chart"),
        Binding("l", "log_scale", "log y"),
    ]

    def __init__(self, source_factory: Callable[[], object], config: RunConfig | None = None) -> None:
        super().__init__()
        self.source_factory = source_factory
        self.config = config
        self.source = None
        self.run_dir = None
        self.started: RunStarted | None = None
        self.ended: Event | None = None
        self.quitting = False
        self.seen_training = False  # the run was still going at a poll: its end is news
        self.confusion_rows = 0  # the height of the confusion matrix, once there is one

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("preparing the run (loading data, building the model)…", id="summary")
        yield ProgressLine(id="progress")
        with Horizontal(id="result"):
            yield Static(id="result-text")
            yield Static(id="confusion")
        with Horizontal(id="middle"):
            yield LossCurve(id="curve")
            yield RichLog(id="log", wrap=True, markup=True, min_width=20)  # wrapped at its own width
        yield EpochTable(id="epochs")
        yield DevicePanel("", id="device")
        yield Footer()

    def on_mount(self) -> None:
        self.fit(self.app.size.width, self.app.size.height)
        self.log_line("preparing the run (loading data, building the model)…")
        self.prepare()

    def on_resize(self, event: events.Resize) -> None:
        self.fit(event.size.width, event.size.height)

    def fit(self, width: int, height: int) -> None:
        """The breakpoints: compact under 100×30, wide over 150 columns, no header under 24 rows."""
        compact = width < COMPACT_BELOW[0] or height < COMPACT_BELOW[1]
        self.set_class(compact, "-compact")
        self.set_class(not compact and width > WIDE_FROM, "-wide")
        self.set_class(height < 24, "-short")
        footer = self.query_one(Footer)
        if footer.compact != compact:  # the footer is composed again with the bindings
            footer.compact, footer.show_command_palette = compact, not compact  # ctrl+p still opens it
            self.refresh_bindings()
        # the confusion matrix where it leaves the chart and the epochs their room
        self.query_one("#confusion").display = not compact and self.confusion_rows <= height // 3

    def on_unmount(self) -> None:
        """Leaving (or the app closing) never leaves a training thread behind."""
        if self._live():
            self.source.control.stop("the dashboard closed")
            self.source.run.wait()
            if isinstance(self.source.run.result, RunStopped):
                self.app.farewell = printable(stopped_text(self.source.run.result))

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
        self.refresh_bindings()
        # Training starts once the screen is drawn: the first paint (styles, layout, the plot) is
        # the app's costliest moment, and sharing the interpreter with it slows the first epochs.
        self.call_after_refresh(self.begin)

    def begin(self) -> None:
        self.source.start()
        self.poller = self.set_interval(POLL_SECONDS, self.poll)

    def poll(self) -> None:
        """Apply the events that arrived since the last tick (of the frequent kinds, the newest)."""
        for event in newest_only(self.source.poll()):
            self.handle(event)
        if self.ended is not None:
            self.poller.stop()
            self.query_one(EpochTable).flush()
        else:
            self.seen_training = True

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
            if event.level != "info" and self.has_class("-compact"):  # no log on screen: say it once
                self.notify(printable(event.text), severity="warning", markup=False)
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
        if self.config is None:  # a resumed or watched run: `n` starts from its settings
            try:
                self.config = RunConfig.from_dict(dict(event.config))
            except (TorchdeckError, TypeError, ValueError):  # another version's or another machine's config
                pass
        self.query_one("#summary", Static).update(plain(started_text(event)))
        self.query_one(ProgressLine).started(event)
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
        self.query_one(ProgressLine).on_batch(event)
        self.query_one(LossCurve).add_batch(event.epoch, event.batch, event.batches, event.loss)

    def on_epoch(self, event: EpochEnded) -> None:
        self.query_one(ProgressLine).on_epoch(event)
        row = event.to_dict()
        self.query_one(EpochTable).queue_epoch(row, improved=event.improved)
        self.query_one(LossCurve).add_epoch(row, improved=event.improved)

    def on_finished(self, event: RunFinished) -> None:
        self.log_line(f"[green]{literal(finished_text(event))}[/]")
        self.end(event, Text.assemble(
            plain(f"✔ {finished_text(event)}", "bold green"), "\n",
            ("best.pt ", "bold"), plain(f"{event.run_dir}/best.pt"), "\n",
            ("last.pt ", "bold"), plain(f"{event.run_dir}/last.pt"), "\n",
            ("e evaluate · b browse runs · n new run · q quit", "dim"),
        ), f"finished: {event.run_dir}")
        if "accuracy" in event.test:  # classifiers: show the confusion matrix too
            self.evaluate_best()

    def on_stopped(self, event: RunStopped) -> None:
        text = printable(stopped_text(event))
        self.log_line(f"[yellow]{literal(text)}[/]")
        self.query_one("#result").add_class("stopped")
        self.end(event, Text.assemble(plain(f"■ {text}", "bold yellow"), "\n",
                                      ("b browse runs (resume from there) · n new run · q quit", "dim")),
                 f"stopped: {event.run_dir}")
        if self.quitting:
            self.app.farewell = text
            self.app.exit()

    def show_failure(self, message: str) -> None:
        self.log_line(f"[red]run failed: {literal(message)}[/]")
        self.query_one("#result").add_class("failed")
        self.end(self.ended or RunFailed(message=message),
                 Text.assemble(("✘ The run failed", "bold red"), "\n", plain(message), "\n",
                               ("n new run · b browse runs · q quit", "dim")),
                 f"failed: {message}")

    def end(self, event: Event, result: Text, news: str) -> None:
        """The run is over: its result replaces the live parts, and the terminal is told."""
        self.ended = event
        self.query_one("#result-text", Static).update(result)
        self.query_one(ProgressLine).pause(False)
        self.add_class("-ended")
        self.refresh_bindings()
        if self.seen_training:
            tell_terminal(self.app, news)

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
        self.log_line(literal(summary))
        if "confusion_matrix" in result:
            self.query_one("#confusion", Static).update(confusion_table(result["classes"], result["confusion_matrix"]))
            self.confusion_rows = len(result["classes"]) + 5  # title, rules and the header
            self.fit(self.app.size.width, self.app.size.height)

    # --- keys --------------------------------------------------------------------------------------

    def _live(self) -> bool:
        return self.source is not None and self.source.control is not None and self.ended is None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only the keys that apply now (and so only they in the footer): pause, resume and stop
        while a run trains here; evaluate once it has ended; runs and new run once nothing
        trains here."""
        live = self._live()
        if action in ("pause", "resume"):
            return live and self.source.control.paused == (action == "resume")
        if action == "stop":
            return live
        if action == "evaluate":
            return isinstance(self.ended, (RunFinished, RunStopped))
        if action in ("browse", "new_run"):
            return self.ended is not None or (self.source is not None and not live)
        return True

    def action_pause(self) -> None:
        self.source.control.pause()
        self.query_one(ProgressLine).pause(True)
        self.log_line("[yellow]paused: p resumes[/]")
        self.refresh_bindings()

    def action_resume(self) -> None:
        self.source.control.resume()
        self.query_one(ProgressLine).pause(False)
        self.log_line("resumed")
        self.refresh_bindings()

    def action_stop(self) -> None:
        self.log_line("stopping after the current batch…")
        self.source.control.stop("s pressed on the dashboard")

    def action_chart_view(self) -> None:
        self.query_one(LossCurve).cycle_view()

    def action_log_scale(self) -> None:
        self.query_one(LossCurve).toggle_log()

    def action_evaluate(self) -> None:
        self.notify("evaluating the best checkpoint on the test split…")
        self.evaluate_best()

    def action_browse(self) -> None:
        self.app.open_browser(select=self.run_dir)

    def action_new_run(self) -> None:
        self.app.new_run(self.config)

    def action_quit_dashboard(self) -> None:
        if not self._live():
            self.app.exit()
            return

        def answered(stop: bool | None) -> None:
            if stop and self._live():
                self.quitting = True
                self.log_line("stopping after the current batch, then quitting…")
                self.source.control.stop("q pressed on the dashboard")
            elif stop:
                self.app.exit()

        self.app.push_screen(ConfirmQuit(), answered)
