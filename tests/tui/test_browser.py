"""The checkpoint browser: the engine's run listing, and the screen driven through Textual's pilot.

A handful of real tiny runs (finished, stopped, failed) plus a fake one that "trains" in this
very process are made once for the module; tests that change a folder work on a copy.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import HOSTILE_CLASSES, highlight, hostile_csv, settle, text, until
from textual.widgets import DataTable, Input, Static

from engine.config import RunConfig
from engine.events import EpochEnded
from engine.store import rundir
from engine.store.lock import RunLock
from engine.store.runs import list_runs, summary
from engine.text import printable
from engine.train.run import Run
from tui.app import TorchdeckApp
from tui.browser import BrowserScreen
from tui.dialogs import (
    AskDialog,
    ConfirmDialog,
    EvaluateDialog,
    ExportDialog,
    PredictDialog,
)
from tui.widgets import EpochTable

SIZE = (100, 30)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Iterator[Path]:
    """A folder with runs named after their status, oldest first: done, stopped, failed, running."""
    out = tmp_path_factory.mktemp("checkpoints")
    Run.new(RunConfig.for_task("iris", epochs=4, out=str(out), name="done")).start().wait()
    stopped = Run.new(RunConfig.for_task("iris", epochs=5, out=str(out), name="stopped"))
    stopped.events.subscribe(lambda e: isinstance(e, EpochEnded) and e.epoch == 2 and stopped.control.stop())
    stopped.start().wait()
    diverging = RunConfig.for_task("linear", optimizer="sgd", lr=1e10, epochs=3, out=str(out), name="failed")
    Run.new(diverging).start().wait()
    running = out / "running"
    running.mkdir()
    shutil.copy(out / "done" / rundir.CONFIG, running / rundir.CONFIG)
    started = {"event": "run_started", "time": time.time() + 1, "start_epoch": 0, "parameters": 243,
               "pid": os.getpid(), "host": socket.gethostname()}
    (running / rundir.EVENTS).write_text(json.dumps(started) + "\n")
    (out / "notes").mkdir()  # not a run: skipped
    (out / "notes" / "todo.txt").write_text("nothing here")
    (out / "README").write_text("a file, not a folder")
    with RunLock(running):  # what a process training it holds: its lock, not its pid, says it runs
        yield out


@pytest.fixture
def copy(runs, tmp_path) -> Path:
    """A copy of the runs that a test may change."""
    return Path(shutil.copytree(runs, tmp_path / "checkpoints"))


@pytest.fixture
def calls(monkeypatch) -> list[tuple]:
    """What the browser asked the app to do (the dashboard and wizard are not part of these tests)."""
    recorded: list[tuple] = []
    for name in ("resume_run", "watch_run", "new_run"):
        monkeypatch.setattr(TorchdeckApp, name,
                            lambda self, *args, _name=name, **kw: recorded.append((_name, args, kw)))
    monkeypatch.setattr(TorchdeckApp, "notify",
                        lambda self, message, **kw: recorded.append(("notify", message)))
    return recorded


def pilot_test(scenario):
    """Run an async test with asyncio.run: the project has no async plugin for pytest."""

    @functools.wraps(scenario)
    def test(*args, **kwargs) -> None:
        asyncio.run(scenario(*args, **kwargs))

    return test


# --- the engine's listing -----------------------------------------------------------------


def test_list_runs_summarises_every_run_newest_first_without_loading_a_checkpoint(runs, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the listing loaded a checkpoint"))
    listed = list_runs(runs)
    assert [run["name"] for run in listed] == ["running", "failed", "stopped", "done"]
    by_name = {run["name"]: run for run in listed}
    assert {name: run["status"] for name, run in by_name.items()} == {
        "running": "running", "failed": "failed", "stopped": "stopped", "done": "finished"}
    assert {name: (run["epochs_done"], run["epochs"]) for name, run in by_name.items()} == {
        "running": (0, 4), "failed": (0, 3), "stopped": (2, 5), "done": (4, 4)}
    done = by_name["done"]
    assert (done["task"], done["model"], done["reason"], done["parameters"]) == ("iris", "mlp", "completed", 243)
    best = done["best"]
    assert best["monitor"] == "accuracy" and 0 < best["value"] <= 1 and 1 <= best["epoch"] <= 4
    assert by_name["stopped"]["reason"] == "stopped by the user" and by_name["stopped"]["best"]["epoch"] <= 2
    assert "diverged" in by_name["failed"]["message"] and by_name["failed"]["best"] == {}
    assert by_name["failed"]["config"]["optimizer"] == "sgd"


def test_folders_that_are_not_runs_are_skipped(tmp_path):
    assert list_runs(tmp_path / "missing") == []
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / rundir.CONFIG).write_text("task = [unclosed")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / rundir.CONFIG).write_text('title = "some other program"\n')
    assert summary(tmp_path / "broken") is None
    assert list_runs(tmp_path) == []


def test_a_run_whose_process_died_counts_as_failed_with_a_reason(copy):
    events = copy / "running" / rundir.EVENTS
    record = json.loads(events.read_text())
    events.write_text(json.dumps({**record, "pid": 2**22 + 12345}) + "\n")
    found = summary(copy / "running")
    assert found["status"] == "failed" and "ended without recording why" in found["message"]


# --- the screen ---------------------------------------------------------------------------


async def press_on(pilot, run_dir: Path, key: str):
    """Wait for the list, highlight ``run_dir``, press ``key`` and wait for what it opens."""
    await settle(pilot)
    await highlight(pilot, run_dir)
    await pilot.press(key)
    await settle(pilot)
    return pilot.app.screen


@pilot_test
async def test_the_list_shows_every_run_with_its_status_and_epochs(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, BrowserScreen)
        table = app.screen.query_one("#runs", DataTable)
        rows = {str(table.get_row(key)[0]): [str(cell) for cell in table.get_row(key)] for key in table.rows}
        assert set(rows) == {"done", "stopped", "failed", "running"}
        assert rows["done"][1:4] == ["iris", "mlp", "4/4"] and rows["done"][5] == "finished"
        assert rows["done"][4].startswith("accuracy 0.")
        assert (rows["stopped"][3], rows["stopped"][5]) == ("2/5", "stopped")
        assert (rows["failed"][3], rows["failed"][4], rows["failed"][5]) == ("0/3", "–", "failed")
        assert rows["running"][5] == "running"
        assert "runs in" in app.screen.sub_title and "4" in app.screen.sub_title


@pilot_test
async def test_details_show_the_history_or_why_there_is_no_checkpoint(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await highlight(pilot, runs / "done")
        assert screen.query_one(EpochTable).row_count == 4
        overview = text(screen.query_one("#overview-text", Static))
        assert "243 parameters" in overview and "finished (completed)" in overview and "test" in overview
        files = text(screen.query_one("#checkpoint-text", Static))
        assert "best.pt" in files and "last.pt" in files and "total" in files

        screen = await highlight(pilot, runs / "failed")
        overview = text(screen.query_one("#overview-text", Static))
        assert "failed" in overview and "training diverged" in overview and "no checkpoint yet" in overview
        assert screen.query_one(EpochTable).row_count == 0
        assert calls == []  # shown in place, not as an error


@pilot_test
async def test_evaluate_shows_a_confusion_matrix_of_the_test_split(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await press_on(pilot, runs / "done", "e")
        assert isinstance(dialog, EvaluateDialog)
        shown = text(dialog.query_one("#result", Static))
        assert "best.pt on the test split (30 samples)" in shown
        assert "confusion matrix" in shown and "classification report" in shown and "setosa" in shown
        await pilot.press("escape")
        assert isinstance(app.screen, BrowserScreen)


@pilot_test
async def test_predict_names_the_class_and_explains_bad_input(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await press_on(pilot, runs / "done", "p")
        assert isinstance(dialog, PredictDialog)
        assert "sepal length (cm)" in text(dialog.query_one("#features", Static))
        dialog.query_one(Input).value = "5.1,3.5,1.4,0.2"
        await pilot.press("enter")
        await settle(pilot)
        assert text(dialog.query_one("#prediction", Static)).split()[0] == "setosa"
        dialog.query_one(Input).value = "5.1,oops"
        await pilot.press("enter")
        await settle(pilot)
        assert "'oops' is not a number" in text(dialog.query_one("#error", Static))


async def ask_to_delete(pilot, run_dir: Path) -> None:
    """Highlight ``run_dir`` in the browser and press ``d``: the confirmation is asked first."""
    await settle(pilot)
    await highlight(pilot, run_dir)
    await pilot.press("d")
    assert isinstance(pilot.app.screen, ConfirmDialog)


@pilot_test
async def test_delete_asks_first_and_refuses_a_running_run(copy, calls):
    app = TorchdeckApp(out=copy, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await ask_to_delete(pilot, copy / "stopped")
        await pilot.press("enter")  # the focus is on "cancel"
        assert (copy / "stopped").is_dir() and isinstance(app.screen, BrowserScreen)
        await pilot.press("d")
        await pilot.click("#yes")
        await settle(pilot)
        assert not (copy / "stopped").exists()
        assert str(copy / "stopped") not in app.screen.query_one("#runs", DataTable).rows

        held = RunLock(copy / "running")  # a copy's lock is free: hold it as the run's process would
        await highlight(pilot, copy / "running")
        await pilot.press("d")
        assert isinstance(app.screen, BrowserScreen) and (copy / "running").is_dir()
        assert "still training" in calls[-1][1]
        held.release()


@pilot_test
async def test_run_names_are_shown_as_typed_not_read_as_markup(copy, calls):
    named = (copy / "done").rename(copy / "do[red]ne")
    app = TorchdeckApp(out=copy, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await highlight(pilot, named)
        assert str(screen.query_one("#runs", DataTable).get_row(str(named))[0]) == "do[red]ne"
        assert text(screen.query_one("#overview-text", Static)).startswith("do[red]ne")
        await pilot.press("d")
        assert "delete do[red]ne" in text(app.screen.query_one(".title", Static))
        assert f"Delete the run folder {named} " in " ".join(text(widget) for widget in app.screen.query(Static))


@pilot_test
async def test_resume_continues_a_stopped_run_and_asks_for_more_epochs_after_a_finished_one(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await highlight(pilot, runs / "stopped")
        await pilot.press("r")
        assert calls == [("resume_run", (runs / "stopped",), {})]

        await highlight(pilot, runs / "done")
        await pilot.press("r")
        dialog = app.screen
        assert isinstance(dialog, AskDialog) and dialog.query_one(Input).value == "8"
        dialog.query_one(Input).value = "3"
        await pilot.press("enter")
        assert "larger total" in text(dialog.query_one("#error", Static))
        dialog.query_one(Input).value = "12"
        await pilot.press("enter")
        assert calls[-1] == ("resume_run", (runs / "done",), {"epochs": 12})

        screen = await highlight(pilot, runs / "failed")  # no checkpoint: nothing to resume, and it says why
        assert screen.check_action("resume", ()) is False
        await pilot.press("r")
        assert calls[-1] == ("resume_run", (runs / "done",), {"epochs": 12})
        assert "no checkpoint yet" in text(screen.query_one("#overview-text", Static))


@pilot_test
async def test_watch_is_offered_for_a_running_run_and_new_run_opens_the_wizard(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await highlight(pilot, runs / "done")
        assert screen.check_action("watch", ()) is False
        await pilot.press("w")
        screen = await highlight(pilot, runs / "running")
        assert screen.check_action("resume", ()) is False
        await pilot.press("w", "n")
        assert calls == [("watch_run", (runs / "running",), {}), ("new_run", (), {})]


@pilot_test
async def test_another_folder_can_be_opened(runs, tmp_path, calls):
    app = TorchdeckApp(out=tmp_path, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        assert screen.query_one("#runs", DataTable).row_count == 0
        assert "No runs in" in text(screen.query_one("#overview-text", Static))
        await pilot.press("o")
        dialog = app.screen
        dialog.query_one(Input).value = str(tmp_path / "missing")
        await pilot.press("enter")
        assert "is not a folder" in text(dialog.query_one("#error", Static))
        dialog.query_one(Input).value = str(runs)
        await pilot.press("enter")
        await settle(pilot)
        assert screen.query_one("#runs", DataTable).row_count == 4


@pilot_test
async def test_the_run_to_select_is_highlighted_on_opening(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert text(app.screen.query_one("#overview-text", Static)).startswith("running")  # the newest
        app.open_browser(select=runs / "stopped")
        await settle(pilot)
        assert text(app.screen.query_one("#overview-text", Static)).startswith("stopped")
        assert app.screen.query_one("#runs", DataTable).cursor_row == 2


@pilot_test
async def test_an_unreadable_checkpoint_is_a_message_not_a_crash(copy, calls):
    (copy / "done" / rundir.LAST).write_bytes(b"junk")
    app = TorchdeckApp(out=copy, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await highlight(pilot, copy / "done")
        assert "last.pt is damaged" in text(screen.query_one("#overview-text", Static))
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PredictDialog)  # best.pt is still fine
        await pilot.press("escape")
        (copy / "done" / rundir.BEST).write_bytes(b"")
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, EvaluateDialog)
        assert "best.pt is empty" in text(app.screen.query_one("#error", Static))


@pilot_test
async def test_predict_an_image_for_an_image_task(tmp_path, calls):
    from conftest import shape_images, write_idx_pair
    from PIL import Image

    write_idx_pair(tmp_path / "mnist", "t10k", *shape_images(1000))
    run = Run.new(RunConfig.for_task("mnist", data_dir=str(tmp_path / "mnist"), epochs=3,
                                     out=str(tmp_path / "runs"), name="digits")).start()
    assert run.wait().name == "run_finished"
    images, labels = shape_images(20, seed=3)
    Image.fromarray(images[list(labels).index(7)]).save(tmp_path / "seven.png")
    app = TorchdeckApp(out=tmp_path / "runs", browse=True)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await press_on(pilot, tmp_path / "runs" / "digits", "p")
        assert "path of an image file" in text(dialog.query_one("#features", Static))
        await pilot.press("enter")  # an empty field is not the current folder
        await settle(pilot)
        assert text(dialog.query_one("#error", Static)).strip() == "type an image's path first"
        dialog.query_one(Input).value = str(tmp_path / "seven.png")
        await pilot.press("enter")
        await settle(pilot)
        assert text(dialog.query_one("#prediction", Static)).split()[0] == "7"


@pilot_test
async def test_export_writes_a_verified_file_and_shows_problems_inline(copy, calls, monkeypatch):
    app = TorchdeckApp(out=copy, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await press_on(pilot, copy / "done", "x")
        assert isinstance(dialog, ExportDialog)
        await pilot.click("#torchscript")
        await settle(pilot)
        exported = copy / "done" / "export" / "best.torchscript.pt"
        assert exported.is_file() and (copy / "done" / "export" / "best.torchscript.pt.json").is_file()
        shown = text(dialog.query_one("#result", Static))
        assert str(exported) in shown and "largest difference" in shown and "tolerance" in shown

        monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the optional extra were not installed
        await pilot.click("#onnx")
        await settle(pilot)
        assert 'pip install -e ".[onnx]"' in text(dialog.query_one("#error", Static))
        assert text(dialog.query_one("#result", Static)).strip() == ""
        await pilot.press("escape")
        assert isinstance(app.screen, BrowserScreen) and calls == []


@pilot_test
async def test_a_run_whose_classes_are_markup_and_escapes_is_shown_as_text(tmp_path, calls):
    config = RunConfig.for_task("csv", data_dir=str(hostile_csv(tmp_path)), target="label", epochs=2,
                                out=str(tmp_path / "runs"), name="x[bold]")
    Run.new(config).start().wait()
    (tmp_path / "runs" / "x[bold]").rename(tmp_path / "runs" / "x[bold]\x1b")  # a name torchdeck refuses, made by hand
    app = TorchdeckApp(out=tmp_path / "runs", browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = await highlight(pilot, tmp_path / "runs" / "x[bold]\x1b")
        shown = text(screen.query_one("#overview-text", Static)) + text(screen.query_one("#checkpoint-text", Static))
        assert "weight [kg]" in shown and all(printable(name) in shown for name in HOSTILE_CLASSES)
        assert "x[bold]\\x1b" in shown and "\x1b" not in shown
        dialog = await press_on(pilot, tmp_path / "runs" / "x[bold]\x1b", "e")
        assert isinstance(dialog, EvaluateDialog)
        shown = text(dialog.query_one("#result", Static))
        assert "confusion matrix" in shown and all(printable(name) in shown for name in HOSTILE_CLASSES)


@pilot_test
async def test_delete_is_refused_for_a_run_that_started_training_after_d_was_pressed(copy, calls):
    app = TorchdeckApp(out=copy, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await ask_to_delete(pilot, copy / "stopped")
        resumed = RunLock(copy / "stopped")  # a resume in another process takes the run meanwhile
        await pilot.click("#yes")
        await settle(pilot)
        assert (copy / "stopped" / rundir.LAST).is_file()
        assert f"the run in {copy / 'stopped'} is still training" in calls[-1][1]
        assert "stop it before deleting it" in calls[-1][1]
        resumed.release()
        await pilot.press("d")
        await pilot.click("#yes")
        await settle(pilot)
        assert not (copy / "stopped").exists()


# --- keys and sizes -------------------------------------------------------------------------


@pilot_test
@pytest.mark.parametrize("key", ["q", "escape"])
async def test_q_and_escape_leave_the_browser_or_go_back_to_the_screen_below(runs, calls, key):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        base = app.screen
        app.push_screen(BrowserScreen(out=runs))  # opened over another screen: back to it
        await settle(pilot)
        await pilot.press(key)
        assert app.screen is base and app.is_running
        await pilot.press("p")  # a dialog: escape closes it, the browser stays
        await settle(pilot)
        await pilot.press("escape")
        assert app.screen is base
        await pilot.press(key)
        await pilot.pause()
        assert not app.is_running


@pilot_test
async def test_predict_shows_only_the_answer_to_the_last_input_and_refuses_an_empty_one(runs, calls):
    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=SIZE) as pilot:
        dialog = await press_on(pilot, runs / "done", "p")
        field, result, error = dialog.query_one(Input), dialog.query_one("#prediction"), dialog.query_one("#error")
        field.value = "5.1,3.5,1.4,0.2"
        await pilot.press("enter")
        await settle(pilot)
        assert text(result).split()[0] == "setosa"
        field.value = "5.1,oops"
        await pilot.press("enter")
        await settle(pilot)
        assert "'oops' is not a number" in text(error) and text(result).strip() == ""
        field.value = "5.1,3.5,1.4,0.2"
        await pilot.press("enter")
        await settle(pilot)
        assert text(result).split()[0] == "setosa" and text(error).strip() == ""
        field.value = "   "
        await pilot.press("enter")
        await settle(pilot)
        assert text(error).strip() == "type the feature values first" and text(result).strip() == ""


def fits(widget, width: int, height: int) -> bool:
    region = widget.region
    return region.width > 0 and region.height > 0 and region.right <= width and region.bottom <= height


@pilot_test
async def test_at_80x24_the_list_the_details_and_every_key_that_applies_are_on_screen(runs, calls):
    from textual.widgets import TabbedContent
    from textual.widgets._footer import FooterKey

    app = TorchdeckApp(out=runs, browse=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = await highlight(pilot, runs / "done")
        table = screen.query_one("#runs", DataTable)
        assert fits(table, 80, 24) and table.region.height == table.row_count + 1  # every run and the header
        assert fits(screen.query_one(TabbedContent), 80, 24)
        details = screen.query_one("#overview-text", Static)
        assert details.parent.max_scroll_y == 0  # the whole overview, no scrolling
        assert "test   loss" in text(details) and "4 features" in text(details)
        keys = {key.key: key for key in screen.query(FooterKey)}
        assert {"r", "e", "p", "x", "d", "n", "o", "t", "f", "q"} <= set(keys) and "w" not in keys
        assert all(fits(key, 80, 24) for key in keys.values())
        svg = app.export_screenshot().replace("&#160;", " ")
        assert all(name in svg for name in ("done", "stopped", "failed", "running", "overview", "config"))

        screen = await highlight(pilot, runs / "failed")  # no checkpoint: only what still applies
        # the footer redraws its keys on a later frame (CI's load once caught it before that)
        await until(pilot, lambda: {key.key for key in screen.query(FooterKey)} == {"d", "n", "o", "f", "q"}, 10)
