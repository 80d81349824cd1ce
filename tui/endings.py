"""How a dashboard's run ends for the person: the question before quitting a training run,
and the word to the terminal (bell, desktop notification) when a run is over."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from engine.text import printable


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


def tell_terminal(app, line: str) -> None:
    """Let a person in another window learn the run ended: the bell, and the desktop
    notification that terminals take as OSC 9 (iTerm2, WezTerm, Windows Terminal) or OSC 777
    (VTE, foot, urxvt); only on a real terminal, never in a test's headless app."""
    app.bell()
    if app.is_headless or app._driver is None:  # Textual writes raw output only through its driver
        return
    text = printable(line).replace(";", ",")
    app._driver.write(f"\x1b]9;torchdeck: {text}\x07\x1b]777;notify;torchdeck;{text}\x07")


