"""What is read back from a run directory is checked before any command uses it.

A damaged checkpoint field is one line and exit 2 for every command that reads it; a damaged
line of events.jsonl is passed over like a torn one, and the command works. One finished iris
run is trained for the module and copied per case. The last resort for a bug (an exception
that is no TorchdeckError): one line, exit 1, the traceback in a log.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import highlight, reading_commands, settle, text, until
from textual.widgets import Static

from engine.events import RunFinished
from engine.store import checkpoint, rundir
from tui.app import TorchdeckApp
from tui.browser import BrowserScreen
from tui.dashboard import DashboardScreen

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch) -> Path:
    """Logs of bugs land in this test's own state folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "torchdeck"




def one_line(result, code: int = 2) -> str:
    assert "Traceback" not in result.err + result.out, result.err
    assert result.code == code, (result.code, result.err, result.out[-300:])
    lines = result.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("torchdeck: "), result.err
    return lines[0]


# --- checkpoints ---------------------------------------------------------------------------------

def _history(state):
    return {"history": [{**state["train_state"]["history"][0], "epoch": "x"}]}


# name: (how the checkpoint is changed, the complaint); a change is {part: {field: value}} or {part: value}
CHECKPOINTS = {
    "history": (lambda s: {"train_state": _history(s)}, "its train_state.history[0].epoch is a str, not an int"),
    "best": (lambda s: {"train_state": {"best": {"monitor": 5}}}, "its train_state.best has no epoch"),
    "x-mean-text": (lambda s: {"task": {"x_mean": "abc"}}, "its task.x_mean is a str, not a Tensor"),
    "x-mean-length": (lambda s: {"task": {"x_mean": torch.zeros(5)}}, "its task.x_mean is not of the inputs' shape"),
    "class-names": (lambda s: {"task": {"class_names": [1, 2, 3]}}, "its task.class_names[0] is an int, not a str"),
    "rng-dtype": (lambda s: {"rng": {"torch": torch.zeros(5056)}}, "its rng.torch is not a random generator's state"),
    "rng-shape": (lambda s: {"rng": {"epoch_shuffle": torch.zeros(10, dtype=torch.uint8)}},
                  "its rng.epoch_shuffle is not a random generator's state"),
    "saved-at": (lambda s: {"saved_at": 1e300}, "its saved_at is not a time"),
    "huge": (lambda s: {"config": {"hidden": [10**6, 10**6]}}, ""),  # refused before its model is built
}


def changed(state: dict, change: dict) -> dict:
    state = dict(state)
    for part, value in change.items():
        state[part] = {**state[part], **value} if isinstance(value, dict) and isinstance(state[part], dict) else value
    return state


@pytest.fixture(scope="module")
def damaged(iris, tmp_path_factory) -> Path:
    """A folder of copies of the iris run, one per CHECKPOINTS case, both checkpoints changed."""
    folder = tmp_path_factory.mktemp("damaged")
    state = torch.load(iris / rundir.LAST, weights_only=True)
    for name, (change, _) in CHECKPOINTS.items():
        run_dir = Path(shutil.copytree(iris, folder / name))
        for file in (rundir.LAST, rundir.BEST):
            torch.save(changed(state, change(state)), run_dir / file)
    return folder


@pytest.mark.parametrize("command", ["inspect", "evaluate", "predict", "resume"])
@pytest.mark.parametrize("name", CHECKPOINTS)
def test_a_damaged_checkpoint_field_is_one_line_for_every_command(damaged, cli, name, command):
    line = one_line(cli(*reading_commands(damaged / name, 3)[command]))
    assert line.startswith("torchdeck: error: ")
    if CHECKPOINTS[name][1]:
        assert f"is a damaged torchdeck checkpoint: {CHECKPOINTS[name][1]}" in line


def test_the_browser_tells_of_each_damaged_checkpoint_in_place(damaged):
    async def scenario():
        app = TorchdeckApp(out=damaged, browse=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            for name, (_, complaint) in CHECKPOINTS.items():
                screen = await highlight(pilot, damaged / name)
                shown = text(screen.query_one("#overview-text", Static))
                assert "last.pt" in shown and complaint[:30] in shown.replace("\n", " "), (name, shown)
            assert isinstance(app.screen, BrowserScreen) and not app.bug

    asyncio.run(scenario())


def test_every_part_of_a_task_description_is_checked():
    """The checkpoint's Task record names TaskMeta's fields, no more and no fewer."""
    from dataclasses import fields

    from engine.data.meta import TaskMeta

    assert set(checkpoint.Task.__annotations__) == {f.name for f in fields(TaskMeta)}


# --- the event log ------------------------------------------------------------------------------

EPOCH = {"event": "epoch", "time": 1.0, "epoch": 1, "epochs": 2, "train_loss": 0.5, "val_loss": 0.5,
         "metrics": {"accuracy": 0.5}, "lr": 0.01, "seconds": 0.1, "samples": 105}
LINES = {
    "epoch-bare": json.dumps({"event": "epoch"}),
    "epoch-text": json.dumps({**EPOCH, "epoch": "x"}),
    "epoch-metrics": json.dumps({**EPOCH, "metrics": {"accuracy": "high"}}),
    "finished-best": json.dumps({"event": "run_finished", "run_dir": "x", "reason": "completed", "epochs_done": 2,
                                 "best": {"monitor": 5}, "test": {}, "seconds": 1.0}),
    "started-time": json.dumps({"event": "run_started", "time": 1e300}),
    "batch-loss": json.dumps({"event": "batch", "epoch": 1, "loss": "x"}),
    "not-a-record": "[1, 2]",
    "not-utf8": "\udcff\udcfe{}",
    "deep": "[" * 100_000,
}


@pytest.fixture(scope="module")
def logs(iris, tmp_path_factory) -> Path:
    """Copies of the iris run with one bad line in events.jsonl, right after the run's start."""
    folder = tmp_path_factory.mktemp("logs")
    for name, line in LINES.items():
        run_dir = Path(shutil.copytree(iris, folder / name))
        first, *rest = (run_dir / rundir.EVENTS).read_bytes().splitlines(keepends=True)
        bad = line.encode("utf-8", "surrogateescape") + b"\n"
        (run_dir / rundir.EVENTS).write_bytes(b"".join([first, bad, *rest]))
    return folder


def test_read_events_passes_over_records_that_do_not_fit_their_event(iris, logs):
    good = list(rundir.read_events(iris))
    for name in LINES:
        assert list(rundir.read_events(logs / name)) == good, name


@pytest.mark.parametrize("command", ["inspect", "resume"])
@pytest.mark.parametrize("name", LINES)
def test_a_bad_line_in_the_event_log_is_ignored_by_the_commands(logs, cli, tmp_path, name, command):
    run_dir = Path(shutil.copytree(logs / name, tmp_path / name))  # a resume changes it
    result = cli(*reading_commands(run_dir, 3)[command], "--json")
    assert result.code == 0 and "Traceback" not in result.err, result.err
    if command == "inspect":
        info = json.loads(result.out)
        assert info["status"] == "finished" and info["epoch"] == 2


def test_watch_and_the_browser_ignore_bad_lines_in_the_event_log(logs):
    async def scenario():
        app = TorchdeckApp(out=logs, browse=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(app.screen.runs) == len(LINES))
            assert {(run["status"], run["epochs_done"]) for run in app.screen.runs.values()} == {("finished", 2)}
            # The dashboard rebuilds events itself (tui/sources), from a record of each kind.
            # "deep" is left out: tui/sources._parse lets json's RecursionError through.
            for name in ("epoch-bare", "epoch-text", "finished-best", "not-utf8"):
                app.watch_run(logs / name)
                await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
                assert isinstance(app.screen.ended, RunFinished), name
            assert not app.bug

    asyncio.run(scenario())


# --- the last resort ----------------------------------------------------------------------------

def test_a_bug_in_a_command_is_one_line_and_a_log(iris, cli, monkeypatch, state_home):
    import engine.use.inspect

    def buggy(path):
        raise ValueError("a bug\nwith a second line")

    monkeypatch.setattr(engine.use.inspect, "describe", buggy)
    line = one_line(cli("inspect", iris), code=1)
    assert line.startswith("torchdeck: internal error: ValueError: a bug (the traceback is in ")
    assert line.endswith("; please report it)")
    [log] = state_home.iterdir()
    assert str(log) in line
    assert "Traceback" in log.read_text() and "with a second line" in log.read_text()


def test_a_bug_whose_log_cannot_be_written_is_still_one_line(iris, cli, monkeypatch, tmp_path):
    import engine.use.inspect

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "a-file"))
    monkeypatch.setattr(engine.use.inspect, "describe", lambda path: {}["missing"])
    line = one_line(cli("inspect", iris), code=1)
    assert line.startswith("torchdeck: internal error: KeyError: 'missing' (its traceback could not be kept: ")


def test_a_bug_while_training_keeps_its_traceback_in_the_run_directory(cli, monkeypatch, tmp_path):
    from engine.train.loop import Loop

    def buggy(self, *args, **kwargs):
        raise ValueError("a bug in the loop")

    monkeypatch.setattr(Loop, "evaluate", buggy)
    result = cli("train", "--epochs", "1", "--out", tmp_path / "runs", "--name", "buggy")
    assert result.code == 1 and "Traceback" not in result.err + result.out
    log = (tmp_path / "runs" / "buggy" / "error.log").read_text()
    assert "Traceback" in log and "a bug in the loop" in log


def test_a_bug_in_a_tui_action_is_a_notification_and_the_app_goes_on(tmp_path, monkeypatch, state_home):
    notes = []
    monkeypatch.setattr(TorchdeckApp, "notify", lambda self, message, **kw: notes.append((message, kw)))

    def buggy(self):
        raise ValueError("a bug in an action")

    monkeypatch.setattr(BrowserScreen, "action_new_run", buggy)

    async def scenario():
        app = TorchdeckApp(out=tmp_path, browse=True)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("n")
            await pilot.pause()
            assert isinstance(app.screen, BrowserScreen)  # still there, still answering
            await pilot.press("o")
            await pilot.pause()
            assert not isinstance(app.screen, BrowserScreen)

    asyncio.run(scenario())
    [(message, kw)] = [note for note in notes if "internal error" in note[0]]
    assert message.startswith("internal error: ValueError: a bug in an action (the traceback is in ")
    assert kw["markup"] is False and "Traceback" in next(state_home.iterdir()).read_text()


def test_a_bug_in_a_tui_handler_ends_the_app_with_one_line(tmp_path, monkeypatch, capsys, state_home):
    def buggy(self, event):
        raise ValueError("a bug in a handler")

    monkeypatch.setattr(BrowserScreen, "on_worker_state_changed", buggy)
    app = TorchdeckApp(out=tmp_path, browse=True)
    app.run(headless=True, size=SIZE)
    assert app.return_code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = err.splitlines()
    assert line.startswith("torchdeck: internal error: ValueError: a bug in a handler (the traceback is in ")
    assert "Traceback" in next(state_home.iterdir()).read_text()
