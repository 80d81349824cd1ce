"""A sweep's live leaderboard in the TUI, on a real tiny sweep; `browse SWEEP_DIR` opens it."""

from __future__ import annotations

import asyncio

import pytest
from conftest import settle, until
from textual.widgets import DataTable, Static

from engine.config import RunConfig
from tui.app import TorchdeckApp
from tui.browser import BrowserScreen
from tui.sweep import SweepScreen

pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    from engine.use.sweep import Sweep

    sweep = Sweep.create(RunConfig.for_task("iris", epochs=2), ["lr=0.005..0.05:log"], 2,
                         out=tmp_path_factory.mktemp("sweeps"), name="s[red]")  # brackets: not markup
    sweep.run()
    return sweep.folder


def cells(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(index)] for index in range(table.row_count)]


def test_the_leaderboard_lists_the_trials_best_first_and_opens_one_in_the_browser(swept):
    async def scenario():
        app = TorchdeckApp(out=swept, sweep=swept)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.trials)
            screen = app.screen
            rows = cells(screen.query_one(DataTable))
            assert [row[1] for row in rows] == ["complete", "complete"]
            values = [float(row[2]) for row in rows]
            assert values == sorted(values, reverse=True)  # accuracy: higher is better
            assert all(row[3].startswith("lr=") for row in rows)
            status = str(screen.query_one("#sweep-status", Static).render())
            assert "2 trials: 2 complete · best trial" in status
            assert "s[red]" in screen.sub_title
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, BrowserScreen)
            assert app.screen.shown["path"].name == screen.trials[0]["run_dir"].name
            await pilot.press("q")  # back to the leaderboard
            await until(pilot, lambda: isinstance(app.screen, SweepScreen))

    asyncio.run(scenario())


def test_browse_opens_a_sweep_folder_on_its_leaderboard(monkeypatch, swept):
    from typer.testing import CliRunner

    import cli.main

    opened: list[dict] = []
    monkeypatch.setattr(cli.main, "run_app", lambda **options: opened.append(options))
    assert CliRunner().invoke(cli.main.app, ["browse", str(swept)]).exit_code == 0
    assert opened == [{"out": swept, "sweep": swept}]
