"""The dashboard, driven with Textual's pilot on real tiny runs."""

from __future__ import annotations

import asyncio
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import HOSTILE_CLASSES, hostile_csv, text, train, until
from textual.app import App
from textual.widgets import Static

from engine.config import RunConfig
from engine.text import metrics_text, printable
from tui.app import TorchdeckApp
from tui.dashboard import ConfirmQuit, DashboardScreen
from tui.progress import ProgressLine, duration
from tui.widgets import DevicePanel, EpochTable, LossCurve, epoch_ticks

SIZE = (120, 36)


def result_text(screen: DashboardScreen) -> str:
    """The end-of-run panel as plain text, the confusion matrix included."""
    return text(screen.query_one("#result-text", Static)) + text(screen.query_one("#confusion", Static))


def on_screen(app) -> str:
    """What the terminal shows, from the app's SVG screenshot: its lines joined, borders and
    runs of spaces dropped (so a wrapped sentence reads as one)."""
    lines: dict[int, str] = {}
    svg = app.export_screenshot()
    for number, chunk in re.findall(r'clip-path="url\(#terminal-\w+-line-(\d+)\)">([^<]*)</text>', svg):
        lines[int(number)] = lines.get(int(number), "") + html.unescape(chunk)
    shown = " ".join(lines[number].strip(" \xa0▌│") for number in sorted(lines))
    return " ".join(shown.split())


def dashboard_app(tmp_path, config: RunConfig) -> TorchdeckApp:
    app = TorchdeckApp(out=tmp_path)
    app.new_run = lambda config_=None: app.start_run(config)  # open straight on the dashboard
    return app


def test_a_run_on_the_dashboard(tmp_path):
    config = RunConfig.for_task("iris", epochs=12, out=str(tmp_path), name="dash[red]")  # brackets: not markup

    async def scenario():
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            await pilot.pause(0.3)
            progress = screen.query_one(ProgressLine)
            assert progress.progress == progress.total == 12 * 7
            assert screen.query_one(EpochTable).row_count == 12
            assert len(screen.query_one(LossCurve).val) == 12
            assert screen.ended.name == "run_finished"
            assert "finished after 12 epochs" in result_text(screen)
            assert f"{tmp_path}/dash[red]/best.pt" in result_text(screen)
            await until(pilot, lambda: "confusion matrix" in result_text(screen))
            assert "setosa" in result_text(screen)

    asyncio.run(scenario())
    assert (tmp_path / "dash[red]" / "best.pt").exists() and (tmp_path / "dash[red]" / "last.pt").exists()


def test_pause_resume_and_stop_from_the_keyboard(tmp_path):
    config = RunConfig.for_task("digits", epochs=3000, out=str(tmp_path), name="long")

    async def scenario():
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                        and app.screen.query_one(EpochTable).row_count >= 2)
            screen = app.screen
            epochs_seen = lambda: len(screen.query_one(LossCurve).val)  # noqa: E731
            assert "s" in screen.active_bindings and "e" not in screen.active_bindings
            await pilot.press("p")
            control = screen.source.control
            assert control.paused
            await pilot.pause(0.5)
            seen, eta = epochs_seen(), screen.query_one(ProgressLine).eta()
            await pilot.pause(0.6)
            assert epochs_seen() == seen  # nothing trains while paused
            assert screen.query_one(ProgressLine).eta() == eta  # and the ETA does not count down
            assert "PAUSED epoch" in on_screen(app)
            assert screen.active_bindings["p"].binding.description == "resume"
            await pilot.press("p")
            assert not control.paused
            await pilot.pause(0.3)
            assert "PAUSED" not in on_screen(app)
            await until(pilot, lambda: epochs_seen() > seen)
            await until(pilot, lambda: screen.query_one(EpochTable).row_count > seen)
            await pilot.press("s")
            await until(pilot, lambda: screen.ended is not None)
            assert screen.ended.name == "run_stopped"
            assert "resume with: torchdeck train --resume" in " ".join(result_text(screen).split())  # however it wraps

    asyncio.run(scenario())
    assert (tmp_path / "long" / "last.pt").exists()


def test_quit_while_training_asks_then_stops_and_saves(tmp_path):
    config = RunConfig.for_task("digits", epochs=3000, out=str(tmp_path), name="q")

    async def scenario():
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                        and app.screen.query_one(EpochTable).row_count >= 1)
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
            assert app.screen.ended is None
            await pilot.press("escape")  # Escape asks the same
            await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
            await pilot.press("y")
            await until(pilot, lambda: not app.is_running)
        return app.farewell  # what the shell prints once the app has closed

    farewell = asyncio.run(scenario())
    events = (tmp_path / "q" / "events.jsonl").read_text().splitlines()
    assert '"event": "run_stopped"' in events[-1]
    assert f"{tmp_path}/q/last.pt" in farewell and f"torchdeck train --resume {tmp_path}/q" in farewell


def test_bad_input_and_engine_failures_show_the_error_panel(tmp_path):
    async def failing(config):
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            assert screen.query_one("#result").has_class("failed")
            return result_text(screen)

    too_small = RunConfig.for_task("iris", val_fraction=0.01, out=str(tmp_path))
    assert "val_fraction: 0.01 of 150 samples" in asyncio.run(failing(too_small))
    diverging = RunConfig.for_task("linear", optimizer="sgd", lr=1e10, out=str(tmp_path))
    assert "training diverged" in asyncio.run(failing(diverging))


def test_watch_a_finished_run_written_by_the_cli(tmp_path):
    run, _ = train(tmp_path, "wine", epochs=6, name="done")

    async def scenario():
        app = TorchdeckApp(out=tmp_path, watch=run.run_dir)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            assert screen.query_one(EpochTable).row_count == 6
            assert "finished after 6 epochs" in result_text(screen)
            await pilot.press("p")  # nothing to pause in a watched run: a notice, not a crash
            assert app.is_running

    asyncio.run(scenario())


def test_watching_a_data_parallel_job_says_how_many_processes_train_it(tmp_path):
    run, _ = train(tmp_path, "iris", epochs=2, name="job")
    events = run.run_dir / "events.jsonl"
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    for line in lines:
        if line["event"] == "run_started":
            line["world_size"] = 2  # as rank 0 of `torchdeck train --nproc 2` records it
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))

    async def scenario():
        app = TorchdeckApp(out=tmp_path, watch=run.run_dir)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            assert "2 processes (data parallel)" in str(app.screen.query_one(DevicePanel).content)

    asyncio.run(scenario())


def test_watch_follows_a_run_in_another_process(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "--task", "digits", "--epochs", "60", "--name", "live"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    run_dir = tmp_path / "checkpoints" / "live"
    try:
        deadline = time.monotonic() + 60
        while not (run_dir / "events.jsonl").exists():
            assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
            time.sleep(0.05)

        async def scenario():
            app = TorchdeckApp(out=run_dir.parent, watch=run_dir)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
                screen = app.screen
                assert screen.ended.name == "run_finished"
                assert screen.query_one(EpochTable).row_count == 60

        asyncio.run(scenario())
    finally:
        process.wait(timeout=60)


@pytest.mark.parametrize("command", [[], ["tui"], ["watch", "checkpoints"]])
def test_the_tui_commands_need_a_terminal_or_a_run(cli, command):
    result = cli(*command)
    assert result.code == 2
    assert "torchdeck: error:" in result.err


def test_a_resumed_run_shows_its_earlier_epochs(tmp_path):
    run, _ = train(tmp_path, "iris", epochs=3, name="again")

    async def scenario():
        app = TorchdeckApp(out=tmp_path)
        app.new_run = lambda config_=None: app.resume_run(run.run_dir, epochs=5)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            assert screen.started.start_epoch == 3
            assert screen.query_one(EpochTable).row_count == 5
            assert len(screen.query_one(LossCurve).val) == 5

    asyncio.run(scenario())


def test_from_the_wizard_to_a_finished_run_with_the_keyboard(tmp_path):
    """Launch, Enter through the wizard with 6 epochs typed in, and watch the real run end."""

    async def scenario():
        app = TorchdeckApp(out=tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("enter", "enter")  # task: iris; model: the preset's MLP
            wizard = app.screen
            for _ in range(30):
                if wizard.focused.id == "epochs":
                    break
                await pilot.press("tab")
            await pilot.press("6", "enter", "enter")  # epochs 6; review; start
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            await pilot.pause(0.3)
            progress = screen.query_one(ProgressLine)
            assert progress.progress == progress.total == 6 * 7
            assert screen.query_one(EpochTable).row_count == 6
            return screen.run_dir

    run_dir = Path(asyncio.run(scenario()))
    assert run_dir.parent == tmp_path and run_dir.name.startswith("iris-mlp-")
    assert (run_dir / "best.pt").exists() and (run_dir / "last.pt").exists()


def test_classes_and_a_run_directory_that_are_markup_and_escapes_end_as_text(tmp_path):
    data = hostile_csv(tmp_path)
    config = RunConfig.for_task("csv", data_dir=str(data), target="label", epochs=2, out=str(tmp_path / "o\x1b[2J[/]"))

    async def scenario():
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            await until(pilot, lambda: "confusion matrix" in result_text(screen))
            shown = result_text(screen)
            assert all(printable(name) in shown for name in HOSTILE_CLASSES) and "\x1b" not in shown
            assert "o\\x1b[2J[/]" in shown

    asyncio.run(scenario())


def test_at_80x24_the_end_of_a_run_shows_its_scores_and_checkpoints(tmp_path, monkeypatch):
    """A plain SSH terminal: the result replaces the progress, the newest epochs stay in view,
    and the footer offers what applies after the end (and quit), no longer pause or stop."""
    monkeypatch.chdir(tmp_path)
    config = RunConfig.for_task("iris", epochs=30, out="o", name="small")

    async def scenario():
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            await pilot.pause(1.2)  # the table's and the chart's once-a-second refresh
            assert screen.has_class("-compact")
            shown = on_screen(app)
            assert " ".join(f"test {metrics_text(screen.ended.test)}".split()) in shown
            assert "best.pt o/small/best.pt" in shown and "last.pt o/small/last.pt" in shown
            assert "30 " in shown.split("epoch train loss")[-1]  # the last epoch's row is visible
            assert "cpu" in shown and "q quit" in shown
            bindings = screen.active_bindings
            assert {"e", "b", "n", "q", "v", "l"} <= set(bindings) and not {"p", "s"} & set(bindings)

    asyncio.run(scenario())


def test_the_chart_switches_views_and_marks_the_best_epoch(tmp_path):
    config = RunConfig.for_task("iris", epochs=8, out=str(tmp_path), name="chart")

    async def scenario():
        app = dashboard_app(tmp_path, config)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            curve = app.screen.query_one(LossCurve)
            assert curve.best_epoch == app.screen.ended.best["epoch"]
            assert f"best {curve.best_epoch}" in curve.title()
            assert set(curve.series()) == {"train", "val"} and curve.title().startswith("loss (log)  ━ train")
            await pilot.press("v")
            assert curve.view == "metrics" and set(curve.series()) == {"accuracy"} and not curve.log_y
            await pilot.press("v")
            assert curve.view == "lr" and [x for x, _ in curve.series()["lr"]] == list(range(1, 9))
            await pilot.press("l")
            assert curve.log_y and "(log)" in curve.title()
            await pilot.press("v", "l")
            assert curve.view == "loss" and not curve.log_y  # each view keeps its own axis

    asyncio.run(scenario())


def test_the_chart_shows_batch_losses_until_the_first_epoch_ends():
    class Chart(App):
        def compose(self):
            yield LossCurve()

    async def scenario():
        app = Chart()
        async with app.run_test(size=(60, 20)):
            curve = app.query_one(LossCurve)
            assert curve.series() == {"batch loss": []} and "nothing yet" in curve.title()
            curve.add_batch(1, 2, 4, 0.9)
            curve.add_batch(1, 4, 4, 0.7)
            assert curve.series() == {"batch loss": [(0.5, 0.9), (1.0, 0.7)]}
            curve.add_epoch({"epoch": 1, "train_loss": 0.8, "val_loss": 0.75, "metrics": {}, "lr": 0.1}, improved=True)
            curve.add_batch(2, 1, 4, 0.6)  # once an epoch has ended, epochs are plotted
            assert curve.series() == {"train": [(1, 0.8)], "val": [(1, 0.75)]} and curve.best_epoch == 1

    asyncio.run(scenario())


def test_whole_epoch_ticks_and_readable_durations():
    assert epoch_ticks(100, 10) == [1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert epoch_ticks(7, 10) == [1, 2, 3, 4, 5, 6, 7]
    assert epoch_ticks(3000, 8) == [1, 500, 1000, 1500, 2000, 2500, 3000]
    assert [duration(s) for s in (0.01, 0.4, 42.4, 185, 7620)] == ["0s", "0.4s", "42s", "3m05s", "2h07m"]


def test_new_run_after_a_resumed_run_starts_from_its_settings(tmp_path):
    run, _ = train(tmp_path, "iris", epochs=2, lr=0.05, name="again")

    async def scenario():
        app = TorchdeckApp(out=tmp_path)
        app.new_run = lambda config_=None: app.resume_run(run.run_dir, epochs=3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            screen = app.screen
            assert screen.config.lr == 0.05 and screen.config.epochs == 3
            del app.new_run  # the app's own: the wizard
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, DashboardScreen))
            assert app.screen.config.task == "iris" and app.screen.config.lr == 0.05

    asyncio.run(scenario())
