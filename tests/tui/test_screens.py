"""Every screen at the sizes people get: 80×24 over SSH, 120×40, 200×60.

Each scenario drives the real app on a tiny real run, saves its SVG screenshot (kept in
$TORCHDECK_SCREENSHOTS when set, to look at; tmp_path otherwise) and checks the screen's text,
line by line as the terminal shows it, for what must be visible there without scrolling.
Exact pixel comparisons would break on every Textual release and every timing; what a person
must be able to read does not.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
from pathlib import Path

import pytest
from conftest import settle, train, until

from engine.config import RunConfig
from tui.app import TorchdeckApp
from tui.dashboard import DashboardScreen

SIZES = [(80, 24), (120, 40), (200, 60)]


def screen_lines(svg: str) -> list[str]:
    """The terminal's rows as text, from Textual's SVG screenshot (one <text> per styled span)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for match in re.finditer(r'<text[^>]*\bx="([\d.]+)"[^>]*\by="([\d.]+)"[^>]*>(.*?)</text>', svg, re.S):
        x, y, content = float(match[1]), float(match[2]), html.unescape(re.sub("<[^>]+>", "", match[3]))
        rows.setdefault(y, []).append((x, content.replace("\xa0", " ")))
    return ["".join(part for _, part in sorted(spans)) for _, spans in sorted(rows.items())]


def shot(app: TorchdeckApp, name: str, size: tuple[int, int], folder: Path) -> str:
    """Save the screen as NAME-WxH.svg and return its text, rows joined by newlines."""
    keep = Path(os.environ.get("TORCHDECK_SCREENSHOTS") or folder)
    keep.mkdir(parents=True, exist_ok=True)
    svg = app.export_screenshot()
    (keep / f"{name}-{size[0]}x{size[1]}.svg").write_text(svg)
    return "\n".join(screen_lines(svg))


def words(screen: str) -> str:
    return " ".join(screen.split())


def on_dashboard(out: Path, config: RunConfig) -> TorchdeckApp:
    """The app opening straight on the dashboard of a run of ``config``."""
    app = TorchdeckApp(out=out)
    app.new_run = lambda config_=None: app.start_run(config)
    return app


async def ended(pilot) -> None:
    await until(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen) and pilot.app.screen.ended is not None)
    await settle(pilot)


def run_app(app: TorchdeckApp, size, scenario):
    async def main():
        async with app.run_test(size=size) as pilot:
            return await scenario(pilot)

    return asyncio.run(main())


@pytest.mark.parametrize("size", SIZES)
def test_the_wizard(tmp_path, size):
    async def scenario(pilot):
        await until(pilot, lambda: not pilot.app.screen.later.busy)  # the task's data, read in a job
        await settle(pilot)
        return shot(pilot.app, "wizard", size, tmp_path)

    screen = words(run_app(TorchdeckApp(out=tmp_path), size, scenario))
    assert "iris" in screen and "150 samples" in screen and "next q quit" in screen


@pytest.mark.parametrize("size", SIZES)
def test_the_dashboard_mid_run(tmp_path, size):
    config = RunConfig.for_task("digits", epochs=3000, out=str(tmp_path), name="long")
    app = on_dashboard(tmp_path, config)

    async def scenario(pilot):
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.started is not None
                    and len(app.screen.query_one("#curve").val) >= 2)
        await pilot.press("p")  # a still picture: the run waits while the screen is read
        await until(pilot, lambda: app.screen.source.control.paused)
        await pilot.pause(1.2)
        screen = shot(app, "mid-run", size, tmp_path)
        await pilot.press("s")
        await until(pilot, lambda: app.screen.ended is not None)
        return screen

    screen = words(run_app(app, size, scenario))
    assert re.search(r"PAUSED epoch \d+/3000 · batch \d+/\d+ · loss", screen)
    assert "loss (log)" in screen and "train loss val loss accuracy" in screen
    assert "p resume" in screen and "s stop" in screen and "q quit" in screen


@pytest.mark.parametrize("size", SIZES)
def test_the_end_of_a_run(tmp_path, size, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the run under ./checkpoints, as `torchdeck` started in a folder makes it
    config = RunConfig.for_task("iris", epochs=4, name="done")
    app = on_dashboard(Path("checkpoints"), config)

    async def scenario(pilot):
        await ended(pilot)
        await pilot.pause(1.2)  # the chart redraws once a second
        return shot(app, "end-of-run", size, tmp_path)

    screen = words(run_app(app, size, scenario))
    assert "finished after 4 epochs" in screen and re.search(r"test loss [\d.]+ accuracy [\d.]+", screen)
    assert "checkpoints/done/best.pt" in screen and "checkpoints/done/last.pt" in screen
    assert "e evaluate" in screen and "q quit" in screen and "p pause" not in screen


@pytest.mark.parametrize("size", SIZES)
def test_the_browser(tmp_path, size):
    train(tmp_path, epochs=2, name="first")

    async def scenario(pilot):
        await settle(pilot)
        return shot(pilot.app, "browser", size, tmp_path)

    screen = words(run_app(TorchdeckApp(out=tmp_path, browse=True), size, scenario))
    assert "first" in screen and "finished" in screen and "task iris" in screen


@pytest.mark.parametrize("size", SIZES)
def test_an_error(tmp_path, size):
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    config = RunConfig.for_task("csv", data_dir=str(tmp_path / "table.csv"), target="missing", out=str(tmp_path))
    app = on_dashboard(tmp_path, config)

    async def scenario(pilot):
        await ended(pilot)
        return shot(app, "error", size, tmp_path)

    screen = words(run_app(app, size, scenario))
    assert "failed" in screen and "missing" in screen
