"""The wizard's "your own…": a model or data set class from the user's file, its arguments from a
form, and a broken file told in the step while the app keeps running."""

from __future__ import annotations

import os
import shlex
import textwrap

import pytest
from conftest import calm, drive, text, until
from test_wizard import keys

from engine.config import RunConfig, command_line
from tui.app import TorchdeckApp
from tui.owncode import OWN, OwnCodeScreen, complete

MODEL = """
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, input_size, hidden=8, num_classes=3):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(input_size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.layers(x)

class NotAModel:
    pass
"""

DATA = """
import torch
from torch.utils.data import Dataset

class Points(Dataset):
    def __init__(self, n=60, features=3):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, features, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]
"""


@pytest.fixture
def started(monkeypatch) -> list[RunConfig]:
    configs: list[RunConfig] = []
    monkeypatch.setattr(TorchdeckApp, "start_run", lambda app, config: configs.append(config))
    return configs


def write(folder, name: str, code: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(code))
    return os.path.realpath(path)


async def open_own_model(pilot, screen):
    """From the task step: on to the model step, and pick "your own…" from the model list."""
    await keys(pilot, screen, "enter")
    screen.query_one("#model").value = OWN
    await until(pilot, lambda: isinstance(screen.app.screen, OwnCodeScreen))
    return screen.app.screen


async def read_file(pilot, dialog, path: str) -> None:
    dialog.query_one("#own-path").value = path  # set whole: a long path is slow to press key by key
    await pilot.press("enter")
    await until(pilot, lambda: "reading" not in text(dialog.query_one("#own-status")))


def test_own_model_from_a_file_with_its_arguments_from_the_form(tmp_path, started):
    path = write(tmp_path, "net.py", MODEL)

    async def scenario(pilot, screen):
        dialog = await open_own_model(pilot, screen)
        await read_file(pilot, dialog, path)
        names = dialog.query_one("#own-names")
        assert [names.get_option_at_index(i).id for i in range(names.option_count)] == ["Net"]
        await pilot.press("enter")
        await until(pilot, lambda: dialog.query("#arg-hidden"))
        await pilot.pause()
        assert dialog.query_one("#arg-input_size").value == ""  # filled in from the task
        assert dialog.query_one("#arg-input_size").placeholder == "from the task"
        assert dialog.query_one("#arg-hidden").value == "8"
        await pilot.press("tab", *"16", "enter")
        await until(pilot, lambda: screen.app.screen is screen)
        await calm(pilot, screen)
        assert screen.query_one("#model").value == f"{path}:Net"
        assert screen.query_one("#model_args").value == '{"hidden": 16}'
        assert str(screen.query_one("#parameters").render()).startswith("131 parameters")  # 4*16+16 + 16*3+3
        assert not screen.query_one("#hidden-row").display
        await keys(pilot, screen, "enter", "enter")
        command = screen.query_one("#command").text
        words = shlex.split(command)
        assert words[words.index("--model") + 1] == f"{path}:Net" and command == command_line(screen.config)
        assert words[words.index("--model-args") + 1] == '{"hidden": 16}'
        await pilot.press("enter")

    drive(tmp_path, scenario, size=(80, 24))
    [config] = started
    assert config.model == f"{path}:Net" and dict(config.model_args) == {"hidden": 16}
    assert config == RunConfig.for_task("iris", out=str(tmp_path), model=f"{path}:Net", model_args={"hidden": 16})


@pytest.mark.parametrize("code, expected", [
    ("import torch.nn as nn\nclass Net(nn.Module)\n    pass\n", "failed (line 2): SyntaxError"),
    ("raise RuntimeError('no GPU here')\n", "failed: RuntimeError: no GPU here"),
])
def test_a_broken_file_is_told_in_the_step_and_the_app_keeps_running(tmp_path, started, code, expected):
    path = write(tmp_path, "bad.py", code)

    async def scenario(pilot, screen):
        dialog = await open_own_model(pilot, screen)
        await read_file(pilot, dialog, path)
        status = text(dialog.query_one("#own-status"))
        assert status.startswith(f"model: importing {path} ") and expected in status
        assert dialog.query_one("#own-status").has_class("error")
        await read_file(pilot, dialog, str(tmp_path))  # a folder is no file either
        assert "is a folder" in text(dialog.query_one("#own-status"))
        await pilot.press("escape")
        await pilot.pause()
        assert screen.app.screen is screen and screen.query_one("#model").value == "mlp"
        await keys(pilot, screen, "enter", "enter", "enter")

    drive(tmp_path, scenario, size=(80, 24))
    assert started == [RunConfig.for_task("iris", out=str(tmp_path))]


def test_own_data_set_from_the_end_of_the_task_list(tmp_path, started):
    path = write(tmp_path, "points.py", DATA)

    async def scenario(pilot, screen):
        await pilot.press("end", "enter")
        await until(pilot, lambda: isinstance(screen.app.screen, OwnCodeScreen))
        dialog = screen.app.screen
        await read_file(pilot, dialog, path)
        await pilot.press("enter")
        await until(pilot, lambda: dialog.query("#arg-n"))
        await pilot.pause()
        await pilot.press(*"80", "enter")
        await until(pilot, lambda: screen.app.screen is screen)
        await calm(pilot, screen)
        assert screen.query_one("#tasks").highlighted_option.id == f"{path}:Points"
        assert text(screen.query_one("#task-info")).splitlines()[1].startswith("80 samples of 3 features")
        assert screen.query_one("#task_args").value == '{"n": 80}'
        await keys(pilot, screen, "enter", "enter", "enter", "enter")

    drive(tmp_path, scenario, size=(80, 24))
    [config] = started
    assert config.task == f"{path}:Points" and dict(config.task_args) == {"n": 80}


def test_path_completion_prefers_folders_and_python_files(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "model.txt").write_text("")
    (tmp_path / "net.py").write_text("")
    (tmp_path / "net.pyc").write_text("")
    assert complete(f"{tmp_path}/mo") == f"{tmp_path}/models/"
    assert complete(f"{tmp_path}/ne") == f"{tmp_path}/net.py"
    assert complete(f"{tmp_path}/x") is None and complete(f"{tmp_path}/") is None
