"""Comparing runs in the browser: marks, the comparison screen, its table and its curves.

Three real tiny iris runs that differ only in their learning rate are trained once for the
module; tests that change the folder work on a copy.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from conftest import highlight, settle, train
from textual.widgets import DataTable

from tui.app import TorchdeckApp
from tui.browser import BrowserScreen
from tui.compare import CompareCurve, CompareScreen

LRS = {"slow": 0.01, "mid": 0.05, "fast": 0.2}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("checkpoints")
    for name, lr in LRS.items():
        train(out, epochs=3, lr=lr, name=name)
    return out


@pytest.fixture
def copy(runs, tmp_path) -> Path:
    return Path(shutil.copytree(runs, tmp_path / "checkpoints"))


def marked(table: DataTable) -> set[str]:
    return {Path(key.value).name for key, row in table.rows.items() if row.label.plain == "✓"}


def names(table: DataTable) -> list[str]:
    """The run names down the comparison table (each cell starts with its colour's key)."""
    return [str(table.get_row(key)[0]).removeprefix("━ ") for key in table.rows]


async def mark(pilot, run_dir: Path) -> BrowserScreen:
    screen = await highlight(pilot, run_dir)
    await pilot.press("space")
    await settle(pilot)
    return screen


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_two_marked_runs_open_a_comparison_of_what_differs_and_their_curves(copy, size):
    async def scenario() -> None:
        app = TorchdeckApp(out=copy, browse=True)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            browser = await mark(pilot, copy / "fast")
            assert "c" not in browser.active_bindings  # one marked run is nothing to compare
            await mark(pilot, copy / "slow")
            assert browser.active_bindings["c"].binding.description == "compare (2)"
            assert "2 marked" in browser.sub_title
            await pilot.pause()
            footer = " ".join(app.export_screenshot().replace("&#160;", " ").split())
            assert "compare (2)" in footer and "quit" in footer  # q stays on an 80-column footer

            shutil.copytree(copy / "mid", copy / "mid-again")  # the list changes: its rows are rebuilt
            browser.reload()
            await settle(pilot)
            table = browser.query_one("#runs", DataTable)
            assert table.row_count == 4 and marked(table) == {"fast", "slow"}

            await pilot.press("c")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, CompareScreen)
            table = screen.query_one("#table", DataTable)
            assert sorted(names(table)) == ["fast", "slow"]
            keys = [column.value for column in table.columns]
            assert "option lr" in keys and not any("epochs" in key for key in keys)
            assert {"best", "test accuracy", "test loss"} <= set(keys)
            lrs = [str(cell) for cell in table.get_column("option lr")]
            assert sorted(lrs) == ["0.01", "0.2"]
            assert table.region.bottom <= size[1] and table.region.height >= table.row_count + 2  # all shown

            curve = screen.query_one(CompareCurve)
            assert curve.size.height >= 8
            series = curve.series()
            assert {run for run, *_ in series} == {"fast", "slow"}
            assert {line for _, line, *_ in series} == {"val", "train"}
            assert all(len(points) == 3 for *_, points in series)
            assert len({colour for _, _, colour, _ in series}) == 2  # one colour per run
            legend = str(screen.query_one("#legend").render())
            assert "fast" in legend and "slow" in legend

            await pilot.press("escape")
            assert app.screen is browser and marked(browser.query_one("#runs", DataTable)) == {"fast", "slow"}

    asyncio.run(scenario())


def test_the_table_sorts_on_a_column_and_the_chart_switches_views(runs):
    async def scenario() -> None:
        app = TorchdeckApp(out=runs, browse=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            app.push_screen(CompareScreen([runs / name for name in LRS]))
            await settle(pilot)
            screen = app.screen
            table = screen.query_one("#table", DataTable)
            best = [float(str(cell)) for cell in table.get_column("best")]
            assert best == sorted(best, reverse=True)  # accuracy: the best first

            for _ in range(len(table.columns)):
                if screen.sorting[0] == "option lr":
                    break
                await pilot.press("s")
            assert screen.sorting == ("option lr", False)
            assert names(table) == ["slow", "mid", "fast"]  # lr 0.01, 0.05, 0.2
            screen.sort_on("option lr")  # what a click on the header does when sorted on it already
            await pilot.pause()
            assert names(table) == ["fast", "mid", "slow"]

            curve = screen.query_one(CompareCurve)
            assert curve.view == "loss" and curve.log_y
            await pilot.press("l")
            assert not curve.log_y
            await pilot.press("v")
            assert curve.view == "accuracy" and not curve.log_y  # a metric's axis is linear
            assert {line for _, line, *_ in curve.series()} == {"accuracy"}
            assert "train" not in str(screen.query_one("#legend").render())
            await pilot.press("q")
            assert isinstance(app.screen, BrowserScreen)

    asyncio.run(scenario())


def test_a_folder_that_is_not_a_run_is_one_line_on_the_screen(runs, tmp_path):
    async def scenario() -> None:
        app = TorchdeckApp(out=runs, browse=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            app.push_screen(CompareScreen([runs / "fast", tmp_path]))
            await settle(pilot)
            message = str(app.screen.query_one("#message").render())
            assert "is not a torchdeck run directory" in message and "Traceback" not in message

    asyncio.run(scenario())


def test_names_from_run_folders_are_shown_as_text_never_markup(runs, tmp_path):
    from engine.text import printable

    hostile = Path(shutil.copytree(runs / "fast", tmp_path / "fa[/]st\x1b[2J"))

    async def scenario() -> None:
        app = TorchdeckApp(out=runs, browse=True)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            app.push_screen(CompareScreen([hostile, runs / "slow"]))
            await settle(pilot)
            table = app.screen.query_one("#table", DataTable)
            assert printable(hostile.name) in names(table)
            assert printable(hostile.name) in str(app.screen.query_one("#legend").render())

    asyncio.run(scenario())
