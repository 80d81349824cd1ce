"""How the TUI's jobs report back: the newest answer wins, and a failure is one line on screen."""

from __future__ import annotations

import asyncio
import threading

from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static
from textual.worker import Worker

from engine.errors import DataError
from tui.background import answer, failure, in_thread


class Jobs(App):
    """One line that jobs write their answers and failures to."""

    def compose(self) -> ComposeResult:
        yield Static(id="line")

    def show(self, text: str) -> None:
        self.query_one("#line", Static).update(Text(text))

    @in_thread("answer")
    def reply(self, text: str, gate: threading.Event) -> None:
        gate.wait(timeout=30)
        answer(self.show, text)

    @in_thread("fail")
    def fail(self, error: Exception) -> None:
        raise error

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if (problem := failure(event)) is not None:
            self.show(problem)


def shown(app: Jobs) -> str:
    return str(app.query_one("#line", Static).content)


async def finish(pilot) -> None:
    while any(not worker.is_finished for worker in pilot.app.workers):
        await pilot.pause(0.01)
    await pilot.pause()


def test_a_slow_answer_never_overwrites_a_newer_one():
    async def scenario() -> None:
        app = Jobs()
        async with app.run_test() as pilot:
            older, newer = threading.Event(), threading.Event()
            app.reply("older", older)
            await pilot.pause(0.2)  # its thread is waiting at the gate
            app.reply("newer", newer)  # cancels the older job of its group
            newer.set()
            await finish(pilot)
            older.set()
            await pilot.pause(0.2)
            assert shown(app) == "newer"

    asyncio.run(scenario())


def test_a_failed_job_shows_one_line_and_the_app_keeps_running(state_home):
    async def scenario() -> None:
        app = Jobs()
        async with app.run_test() as pilot:
            app.fail(DataError("[0, 1) is the range: not markup"))
            await finish(pilot)
            assert shown(app) == "[0, 1) is the range: not markup"
            app.fail(ValueError("first line\nsecond line"))
            await finish(pilot)
            line = shown(app)
            assert line.startswith("internal error: ValueError: first line (the traceback is in ")
            assert "\n" not in line and app.is_running

    asyncio.run(scenario())
    [log] = [path for path in (state_home / "torchdeck").glob("error-*.log") if "second line" in path.read_text()]
    assert "Traceback" in log.read_text()
