"""The new-run wizard, driven by key presses: presets, live parameter count, inline errors with
the CLI's messages, the review's command line and TOML; and the command line read back by the CLI."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import calm, drive, error, until

import engine.data.tasks
from cli.main import app as cli_app
from engine.catalog import Catalog
from engine.config import RunConfig, command_line, option_names
from engine.data.meta import RawData, TaskSpec
from engine.errors import ConfigError, DataError
from tui.app import TorchdeckApp


@pytest.fixture
def started(monkeypatch) -> list[RunConfig]:
    """The configs the wizard asks the app to start (no dashboard is opened)."""
    configs: list[RunConfig] = []
    monkeypatch.setattr(TorchdeckApp, "start_run", lambda app, config: configs.append(config))
    return configs


async def keys(pilot, screen, *names: str) -> None:
    """Press each key and let the jobs it started answer before the next (as a person reads
    the screen before pressing on: Enter on a step whose data is still read waits for it)."""
    for name in names:
        await pilot.press(name)
        await calm(pilot, screen)


async def retype(pilot, screen, option: str, text: str) -> None:
    """Tab to ``option``'s input (its text is selected on focus) and type ``text`` over it."""
    for _ in range(20):
        if screen.focused.id == option:
            break
        await keys(pilot, screen, "tab")
    assert screen.focused.id == option, f"Tab never reaches {option}"
    await pilot.press(*text)
    await calm(pilot, screen)


def step(screen) -> str:
    return screen.query_one("ContentSwitcher").current.removesuffix("-step")


def cli_error(cli, *args: str) -> str:
    """What ``torchdeck train ARGS`` says is wrong (without its ``torchdeck: error:`` prefix)."""
    result = cli("train", *args)
    assert result.code == 2
    return result.err.strip().removeprefix("torchdeck: error: ")


def test_enter_through_every_step_starts_the_iris_preset(tmp_path, started):
    async def scenario(pilot, screen):
        for expected in ("task", "model", "training", "review"):
            assert step(screen) == expected
            await keys(pilot, screen, "enter")
            await pilot.pause()

    drive(tmp_path, scenario, size=(80, 24))
    assert started == [RunConfig.for_task("iris", out=str(tmp_path))]


def test_another_task_loads_its_preset_and_going_back_keeps_choices(tmp_path, started):
    async def scenario(pilot, screen):
        await keys(pilot, screen, "down", "enter")
        assert step(screen) == "model" and screen.query_one("#hidden").value == "64,32"
        await retype(pilot, screen, "hidden", "32")
        await keys(pilot, screen, "escape")
        assert step(screen) == "task"
        await keys(pilot, screen, "enter", "enter")
        assert step(screen) == "training"
        await retype(pilot, screen, "epochs", "7")
        await keys(pilot, screen, "escape", "escape", "enter", "enter")
        assert screen.query_one("#hidden").value == "32" and screen.query_one("#epochs").value == "7"
        await keys(pilot, screen, "enter", "enter")

    drive(tmp_path, scenario)
    assert started == [RunConfig.for_task("breast-cancer", out=str(tmp_path), hidden=[32], epochs=7)]


def test_parameter_count_follows_the_model_options(tmp_path, started):
    async def scenario(pilot, screen):
        count = lambda: str(screen.query_one("#parameters").render()).split()[0]
        await keys(pilot, screen, "enter")
        assert count() == "243"  # 4→16→8→3
        await retype(pilot, screen, "hidden", "32")
        assert count() == "259"  # 4*32+32 + 32*3+3
        await keys(pilot, screen, "tab", "tab", "tab", "space")  # batch norm on: 2 parameters per unit
        await pilot.pause()
        assert count() == "323"
        await keys(pilot, screen, "shift+tab", "shift+tab", "shift+tab", "shift+tab", "space", "down", "enter")
        await pilot.pause()  # cnn, next in the list, does not fit a table: the CLI's message, inline
        assert screen.query_one("#model").value == "cnn"
        assert "'cnn' needs image inputs" in error(screen, "model")
        await keys(pilot, screen, "space", "up", "up", "enter")
        await pilot.pause()  # the model list picks linear; its unused options are hidden
        assert screen.query_one("#model").value == "linear" and count() == "15"
        assert not screen.query_one("#hidden-row").display and step(screen) == "model"

    drive(tmp_path, scenario)


def test_invalid_values_show_the_cli_message_and_block_moving_on(tmp_path, started, cli):
    expected = {  # the app captures stderr while it runs, so the CLI is asked first
        "hidden": cli_error(cli, "--hidden", "16,x"),
        "lr": cli_error(cli, "--lr", "-1"),
        "batch_size": cli_error(cli, "--batch-size", "0"),
    }

    async def scenario(pilot, screen):
        await keys(pilot, screen, "enter")
        await retype(pilot, screen, "hidden", "16,x")
        assert error(screen, "hidden") == expected["hidden"]
        assert screen.query_one("#hidden").has_class("invalid")
        assert "fix the marked value" in str(screen.query_one("#parameters").render())
        await keys(pilot, screen, "shift+tab", "enter")
        assert step(screen) == "model" and screen.focused.id == "hidden"
        await keys(pilot, screen, *"16,8", "enter")
        assert step(screen) == "training" and error(screen, "hidden") == ""
        await retype(pilot, screen, "lr", "-1")
        await retype(pilot, screen, "batch_size", "0")
        assert error(screen, "lr") == expected["lr"]
        assert error(screen, "batch_size") == expected["batch_size"]
        await keys(pilot, screen, "enter")
        assert step(screen) == "training" and screen.focused.id == "lr"

    drive(tmp_path, scenario)
    assert started == []


def test_a_message_quoting_what_was_typed_shows_it_as_typed(tmp_path, started, cli):
    expected = cli_error(cli, "--hidden", "[b]8")

    async def scenario(pilot, screen):
        await keys(pilot, screen, "enter")
        await retype(pilot, screen, "hidden", "[b]8")
        assert error(screen, "hidden") == expected and "'[b]8'" in expected

    drive(tmp_path, scenario)


def test_review_shows_copies_and_saves_the_config(tmp_path, started, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def scenario(pilot, screen):
        await keys(pilot, screen, "down", "down", "enter")  # linear regression preset
        await keys(pilot, screen, "tab", "tab", "tab", "tab", "space", "enter")  # batch norm on
        await retype(pilot, screen, "lr", "0.05")
        await keys(pilot, screen, "enter")
        assert step(screen) == "review"
        config = screen.config
        command = command_line(config)
        assert "--lr 0.05" in command and "--batch-norm" in command
        assert screen.query_one("#command").text == command
        await keys(pilot, screen, "c")
        assert screen.app.clipboard == command
        await keys(pilot, screen, "s")
        await pilot.pause()
        await keys(pilot, screen, "enter")
        await pilot.pause()
        assert RunConfig.from_toml(tmp_path / "run.toml") == config
        return config

    config = drive(tmp_path, scenario, size=(80, 24))
    assert config == RunConfig.for_task("linear", out=str(tmp_path), batch_norm=True, lr=0.05)


def test_a_task_that_reads_a_data_folder_asks_for_it(tmp_path, started, monkeypatch):
    def load(config) -> RawData:
        if config.data_dir is None or not (Path(config.data_dir) / "x.npy").is_file():
            raise DataError(f"no x.npy in {config.data_dir}")
        x = np.load(Path(config.data_dir) / "x.npy")
        return RawData(x, (x[:, 0] > 0).astype(np.int64), [f"f{i}" for i in range(5)])

    folder = tmp_path / "data"
    spec = TaskSpec("folder-task", "points from a folder", "binary", load, dict(model="mlp", hidden=[8]),
                    source="a data folder", reads_data_dir=True)
    monkeypatch.setattr(engine.data.tasks, "TASKS", Catalog("task", [*engine.data.tasks.TASKS.values(), spec]))

    async def scenario(pilot, screen):
        assert not screen.query_one("#data_dir-row").display
        await keys(pilot, screen, "end", "up")  # the last task listed: "your own…" comes after it
        await pilot.pause()
        assert screen.query_one("#data_dir-row").display
        assert error(screen, "data_dir") == "no x.npy in None"
        await keys(pilot, screen, "enter")
        assert step(screen) == "task" and screen.focused.id == "data_dir"
        folder.mkdir()
        np.save(folder / "x.npy", np.random.default_rng(0).standard_normal((60, 5)).astype(np.float32))
        screen.focused.value = str(folder)  # set whole: a long path is slow to press key by key
        await pilot.pause()
        assert error(screen, "data_dir") == ""
        await keys(pilot, screen, "enter")
        assert str(screen.query_one("#parameters").render()).startswith("57 parameters")  # 5*8+8 + 8+1
        await keys(pilot, screen, "enter", "enter", "enter")

    drive(tmp_path, scenario)
    assert started == [RunConfig.for_task("folder-task", out=str(tmp_path), data_dir=str(folder))]


def parse_command(line: str) -> RunConfig:
    """The config ``torchdeck train`` builds from ``line``, parsed by the CLI's own flags."""
    train = typer.main.get_command(cli_app).commands["train"]
    words = shlex.split(line)
    assert words[:2] == ["torchdeck", "train"]
    params = train.make_context("train", words[2:]).params
    return RunConfig.from_values({k: v for k, v in params.items() if k in option_names() and v is not None})


@pytest.mark.parametrize("task, changes", [
    ("iris", {}),
    ("breast-cancer", dict(hidden=[32, 16, 8], batch_norm=True, optimizer="sgd", momentum=0.9, nesterov=True,
                           lr=1e-5, scheduler="plateau", gamma=0.5, device="cpu", seed=3)),
    ("diabetes", dict(model="linear", loss="huber", monitor="r2", out="my runs", name="it's mine",
                      val_fraction=0.15, min_delta=0.001)),
])
def test_command_line_reads_back_through_the_cli_flags(task, changes):
    config = RunConfig.for_task(task, **changes)
    line = command_line(config)
    assert line.count("--") == 1 + len(changes)
    assert parse_command(line) == config


def test_command_line_turns_a_preset_flag_off(monkeypatch):
    monkeypatch.setitem(engine.data.tasks.TASKS["wine"].preset, "batch_norm", True)
    config = RunConfig.for_task("wine", batch_norm=False)
    assert command_line(config) == "torchdeck train --task wine --no-batch-norm"
    assert parse_command(command_line(config)) == config


def test_typing_markup_into_a_value_shows_the_error_as_typed(tmp_path, started):
    with pytest.raises(ConfigError) as refused:
        RunConfig.for_task("iris", lr="[/")

    async def scenario(pilot, screen):
        await keys(pilot, screen, "enter", "enter")
        await retype(pilot, screen, "lr", "[/")
        assert error(screen, "lr") == str(refused.value) and "'[/'" in str(refused.value)

    drive(tmp_path, scenario)


def test_a_switch_says_whether_it_is_on(tmp_path, started):
    async def scenario(pilot, screen):
        await keys(pilot, screen, "enter")
        state = lambda: str(screen.query_one("#batch_norm-row").state.render())
        assert state() == "off"
        await keys(pilot, screen, "tab", "tab", "tab", "tab", "space")
        assert screen.focused.id == "batch_norm" and state() == "on"

    drive(tmp_path, scenario, size=(80, 24))


def test_a_model_too_big_for_the_machine_is_marked_in_red(tmp_path, started):
    async def scenario(pilot, screen):
        await keys(pilot, screen, "enter")
        size = screen.query_one("#parameters")
        assert "to train" in str(size.render()) and "will not fit" not in str(size.render())
        await retype(pilot, screen, "hidden", "100000000,100000000")  # 10^16 weights
        shown = str(size.render())
        assert shown.startswith("10,000,000,") and "will not fit" in shown
        assert any("red" in str(span.style) for span in size.render().spans)

    drive(tmp_path, scenario, size=(80, 24))


def test_messages_name_the_wizard_rows_not_the_cli_flags(tmp_path, started, cli):
    assert "--data-dir DIR" in cli_error(cli, "--task", "image-folder")

    async def scenario(pilot, screen):
        tasks = screen.query_one("#tasks")
        tasks.highlighted = tasks.get_option_index("image-folder")
        await calm(pilot, screen)
        assert error(screen, "data_dir") == ("image-folder: give the image folder in the data dir row "
                                             "(one sub-folder per class)")

    drive(tmp_path, scenario, size=(80, 24))


@pytest.mark.parametrize("key", ["q", "escape"])
def test_q_and_escape_on_the_first_step_leave(tmp_path, started, key):
    async def scenario(pilot, screen):
        await keys(pilot, screen, key)
        return pilot.app.is_running

    assert drive(tmp_path, scenario) is False


def test_q_in_a_text_field_is_a_letter_and_escape_goes_back_a_step(tmp_path, started):
    async def scenario(pilot, screen):
        await keys(pilot, screen, "enter", "enter")
        await retype(pilot, screen, "lr", "q")
        assert screen.query_one("#lr").value == "q" and pilot.app.is_running
        await keys(pilot, screen, "escape")
        assert step(screen) == "model"
        await keys(pilot, screen, "q")  # the model list has the focus: q leaves
        return pilot.app.is_running

    assert drive(tmp_path, scenario) is False


def test_enters_typed_ahead_of_the_jobs_each_move_on_once(tmp_path, started):
    async def scenario(pilot, screen):
        await pilot.press("down", "enter", "enter", "enter", "enter")  # the data and the count come meanwhile
        await until(pilot, lambda: started)

    drive(tmp_path, scenario)
    assert started == [RunConfig.for_task("breast-cancer", out=str(tmp_path))]
