"""The torchdeck Textual app: wizard → dashboard → checkpoint browser.

Screens never talk to each other directly; they ask the app to move on (``start_run``,
``resume_run``, ``watch_run``, ``open_browser``, ``new_run``), and the app swaps the screen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.app import App
from textual.binding import Binding

from engine.config import RunConfig


class TorchdeckApp(App):
    """Train, watch and browse PyTorch runs from the terminal."""

    TITLE = "torchdeck"
    BINDINGS = [Binding("ctrl+q", "quit", "quit", show=False, priority=True)]

    def __init__(self, out: str | Path = "checkpoints", watch: str | Path | None = None,
                 browse: bool = False) -> None:
        super().__init__()
        self.out = Path(out)
        self._watch = Path(watch) if watch else None
        self._browse = browse

    def on_mount(self) -> None:
        if self._watch is not None:
            self.watch_run(self._watch)
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
