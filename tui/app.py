"""The torchdeck Textual app: wizard → dashboard → checkpoint browser.

Screens never talk to each other directly; they ask the app to move on (``start_run``,
``resume_run``, ``watch_run``, ``open_browser``, ``new_run``), and the app swaps the screen;
``open_tensors`` stacks the model-file browser over the screen that asked, to go back to.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.worker import WorkerFailed

from engine.config import RunConfig
from engine.errors import TorchdeckError
from engine.store import errorlog
from engine.text import printable


def _line(error: Exception) -> str:
    """What a person is told of ``error``: an engine error's own message, or a bug's line and log."""
    return printable(f"error: {error}" if isinstance(error, TorchdeckError) else errorlog.report(error))


class TorchdeckApp(App):
    """Train, watch and browse PyTorch runs from the terminal."""

    TITLE = "torchdeck"
    BINDINGS = [Binding("ctrl+q", "quit", "quit", show=False, priority=True)]

    def __init__(self, out: str | Path = "checkpoints", watch: str | Path | None = None,
                 browse: bool = False, inspect: str | Path | None = None, sweep: str | Path | None = None,
                 sweep_storage: str | None = None) -> None:
        super().__init__()
        self.out = Path(out)
        self._watch = Path(watch) if watch else None
        self._browse = browse
        self._inspect = Path(inspect) if inspect else None
        self._sweep = Path(sweep) if sweep else None
        self._sweep_storage = sweep_storage
        self.bug = ""  # the line of the bug that ended the app, if one did
        self.farewell = ""  # what the shell is told once the app has closed (a stopped run's resume command)

    # --- the last resort: a bug is one line and a log, never a traceback over the screen -------
    # Jobs (tui.background) already end in a message on their screen. Actions (every key binding)
    # are caught before Textual sees them, so the app goes on. What else escapes a handler reaches
    # Textual's one funnel, App._handle_exception, after Textual has stopped the part that raised:
    # the app then ends, saying in one line where the traceback is, instead of printing it.

    async def run_action(self, action, default_namespace=None, namespaces=None) -> bool:
        try:
            return await super().run_action(action, default_namespace, namespaces)
        except Exception as error:
            self.notify(_line(error), severity="error", timeout=20, markup=False)
            return True

    def _handle_exception(self, error: Exception) -> None:
        if isinstance(error, WorkerFailed):  # a job started with exit_on_error
            error = error.error
        self.bug = self.bug or f"torchdeck: {_line(error)}"
        self.exit(return_code=1)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the app; then, the terminal itself again, its farewell on stdout and the one line of
        a bug that ended it on stderr."""
        result = super().run(*args, **kwargs)
        if self.farewell:
            print(self.farewell)
        if self.bug:
            print(self.bug, file=sys.stderr)
        return result

    def on_mount(self) -> None:
        if self._watch is not None:
            self.watch_run(self._watch)
        elif self._inspect is not None:
            self.open_tensors(self._inspect)
        elif self._sweep is not None:
            from tui.sweep import SweepScreen

            self._show(SweepScreen(self._sweep, self._sweep_storage))
        elif self._browse:
            self.open_browser()
        else:
            self.new_run()

    def _show(self, screen) -> None:
        """Make ``screen`` the one main screen (modal dialogs stack on top of it)."""
        if len(self.screen_stack) > 1:
            self.switch_screen(screen)
        else:
            self.push_screen(screen)

    def new_run(self, config: RunConfig | None = None) -> None:
        from tui.wizard import WizardScreen

        self._show(WizardScreen(out=self.out, config=config))

    def start_run(self, config: RunConfig) -> None:
        from engine.train.run import Run
        from tui.dashboard import DashboardScreen
        from tui.sources import LiveRun

        self._show(DashboardScreen(lambda: LiveRun(Run.new(config)), config=config))

    def resume_run(self, path: str | Path, **changes: Any) -> None:
        from engine.train.run import Run
        from tui.dashboard import DashboardScreen
        from tui.sources import LiveRun

        self._show(DashboardScreen(lambda: LiveRun(Run.resume(path, **changes))))

    def watch_run(self, run_dir: str | Path) -> None:
        from tui.dashboard import DashboardScreen
        from tui.sources import WatchedRun

        self._show(DashboardScreen(lambda: WatchedRun(run_dir)))

    def open_browser(self, select: str | Path | None = None) -> None:
        from tui.browser import BrowserScreen

        self._show(BrowserScreen(out=self.out, select=Path(select) if select else None))

    def open_tensors(self, path: str | Path | None) -> None:
        """The tensors of a model file or run directory, over the screen that asked (q goes back);
        None: nothing to open (a cancelled dialog, or a run without a checkpoint, already said)."""
        from tui.tensors import TensorScreen

        if path is not None:
            self.push_screen(TensorScreen(path))

    def action_leave(self) -> None:
        """q and Escape on a screen: back to the one below, or out of the app from the main screen
        (the app's blank default screen is always at the bottom of the stack)."""
        if len(self.screen_stack) > 2:
            self.pop_screen()
        else:
            self.exit()

    def action_ask_tensors(self) -> None:
        """Ask for a model file (the run browser's "open a file") and show its tensors."""
        from tui.tensors import file_dialog

        self.push_screen(file_dialog(self.out), self.open_tensors)
