"""The wizard's learning-rate finder: the range test of the options chosen so far, run in a job,
its curve and suggestion in a small dialog; Enter takes the suggestion into the lr row.

The test trains a throw-away model (engine.train.lrfind), so nothing the wizard holds changes
until the suggestion is accepted. Closing the dialog cancels the job, which stops at its next
batch.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static
from textual.worker import Worker, get_current_worker
from textual_plotext import PlotextPlot

from engine.config import RunConfig
from engine.text import printable
from engine.train.lrfind import LrFind, find_lr
from tui.background import answer, failure, in_thread


def find(wizard) -> None:
    """Open the finder on the wizard's training options (refused while one of them is bad); the
    suggestion accepted fills the lr row, rounded to three significant digits."""
    if not wizard._check("training"):
        return wizard._refuse("training")

    def accepted(lr: float | None) -> None:
        if lr is not None:
            wizard._row("lr").load(float(f"{lr:.3g}"))
            wizard._check("training")

    wizard.app.push_screen(LrFindScreen(wizard.config), accepted)


class LrFindScreen(ModalScreen[float | None]):
    """The range test of ``config``: its smoothed loss by learning rate (log scale), the suggested
    rate and the rule that chose it; dismissed with the suggestion (Enter) or None (Escape)."""

    DEFAULT_CSS = """
    LrFindScreen { align: center middle; }
    LrFindScreen > Vertical {
        width: 84; max-width: 100%; height: 26; max-height: 100%; padding: 0 1;
        border: thick $accent; background: $surface;
    }
    LrFindScreen PlotextPlot { height: 1fr; min-height: 8; }
    LrFindScreen #verdict { height: auto; }
    LrFindScreen .hint { color: $text-muted; }
    LrFindScreen .error { color: $text-error; }
    """
    BINDINGS = [Binding("enter", "use", "use it", priority=True), Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config
        self.suggestion: float | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"Learning-rate finder · {printable(self.config.task)} · "
                             f"{printable(self.config.model)} · {self.config.optimizer}", style="bold"))
            yield PlotextPlot(id="curve")
            yield Static(Text("training a throw-away copy of the model for up to 100 batches…"), id="verdict")
            yield Static("Enter fills the lr row with the suggestion · Escape cancels", classes="hint")

    def on_mount(self) -> None:
        self._find(self.config)

    @in_thread("lr-find")
    def _find(self, config: RunConfig) -> None:
        worker = get_current_worker()
        answer(self._found, find_lr(config, cancelled=lambda: worker.is_cancelled))

    def _found(self, found: LrFind) -> None:
        self.suggestion = found.suggestion
        rates, losses, ticks = found.chart()
        plt = self.query_one(PlotextPlot).plt
        plt.clear_data()
        plt.xscale("log")
        plt.title("smoothed loss by learning rate")
        if rates:
            plt.xticks(ticks, [f"{tick:.0e}" for tick in ticks])
            plt.plot(rates, losses, marker="braille")
        if found.suggestion is not None:
            plt.vline(found.suggestion, "red")
        self.query_one(PlotextPlot).refresh()
        head = (Text(f"suggested lr {found.suggestion:.3g}", style="bold") if found.suggestion is not None
                else Text("no learning rate suggested", style="bold"))
        self.query_one("#verdict", Static).update(Text.assemble(
            head, f" (now {self.config.lr:g})\n", found.rule, "\n", (found.stopped, "dim")))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if problem := failure(event):
            verdict = self.query_one("#verdict", Static)
            verdict.update(Text(printable(problem)))
            verdict.add_class("error")

    def action_use(self) -> None:
        if self.suggestion is None:
            self.app.bell()
        else:
            self.dismiss(self.suggestion)
