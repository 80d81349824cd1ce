"""The user's own model and data (``--model FILE.py:NAME``, ``--task FILE.py:NAME``): the seed
tutorials' classes train unchanged, every later command rebuilds them, and a checkpoint can
never make torchdeck run code the user did not train with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from engine.config import RunConfig
from engine.store import checkpoint
from engine.train.run import Run

# Seed 000's data set and model, exactly as the tutorial writes them (its imports included).
SEED_000 = '''
import torch
from torch.utils.data import Dataset, DataLoader

class SimpleDataset(Dataset):
    """Custom dataset: implement three methods."""

    def __init__(self, num_samples=1000):
        # y = 2x + 1 + noise
        self.x = torch.randn(num_samples, 1)
        self.y = 2 * self.x + 1 + torch.randn(num_samples, 1) * 0.1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, idx):
        return self.x[idx], self.y[idx]

import torch
import torch.nn as nn

class MyModel(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
        )

    def forward(self, x):
        return self.net(x)
'''

# Seed 002's Iris classifier as the tutorial defines it; the digest shows no forward, so this is
# the one its description gives (ReLU and dropout after each hidden layer).
SEED_002 = '''
import torch.nn as nn

class IrisClassifier(nn.Module):
    def __init__(self, input_size=4, hidden1_size=16, hidden2_size=8, num_classes=3):
        super(IrisClassifier, self).__init__()
        self.fc1 = nn.Linear(input_size, hidden1_size)    # 4 -> 16
        self.fc2 = nn.Linear(hidden1_size, hidden2_size)  # 16 -> 8
        self.fc3 = nn.Linear(hidden2_size, num_classes)   # 8 -> 3
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.2)

    def forward(self, x):
        x = self.dropout(self.relu(self.fc1(x)))
        x = self.dropout(self.relu(self.fc2(x)))
        return self.fc3(x)
'''


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def only_run(out: Path) -> Path:
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def iris_classifier(tmp_path_factory) -> Path:
    """A finished iris run of seed 002's IrisClassifier (the preset's 100 epochs)."""
    folder = tmp_path_factory.mktemp("seed002")
    code = write(folder, "seed002.py", SEED_002)
    run = Run.new(RunConfig.for_task("iris", model=f"{code}:IrisClassifier", out=str(folder / "runs"))).start()
    assert run.wait().name == "run_finished"
    return run.run_dir


def test_seed_000_trains_unchanged_and_predicts_the_line(cli, tmp_path):
    write(tmp_path, "seed000.py", SEED_000)
    trained = cli("train", "--task", "seed000.py:SimpleDataset", "--model", "seed000.py:MyModel",
                  "--model-args", '{"input_dim":1,"hidden_dim":32,"output_dim":1}', "--loss", "mse",
                  "--lr", "0.001", "--batch-size", "32", "--epochs", "50", "--out", "runs")
    assert trained.code == 0, trained.err
    run_dir = only_run(tmp_path / "runs")
    answer = cli("predict", run_dir, "--input", "1", "--input", "2", "--input", "3", "--json")
    assert answer.code == 0, answer.err
    values = [row["value"] for row in json.loads(answer.out)]
    assert values == pytest.approx([3, 5, 7], abs=0.15)

    for command in (("inspect", run_dir), ("evaluate", run_dir), ("export", run_dir),
                    ("train", "--resume", run_dir, "--epochs", "51")):
        result = cli(*command)
        assert result.code == 0, (command, result.err)
    assert json.loads(cli("inspect", run_dir, "--json").out)["epoch"] == 51


def test_seed_002_iris_classifier_reaches_the_presets_accuracy(iris_classifier, out):
    preset = Run.new(RunConfig.for_task("iris", out=str(out))).start()
    preset.wait()
    own = checkpoint.load(iris_classifier / "last.pt")["test"]["accuracy"]
    assert own >= checkpoint.load(preset.run_dir / "last.pt")["test"]["accuracy"] - 1 / 30  # one of 30 flowers


def test_the_model_of_a_run_is_rebuilt_by_every_command(iris_classifier, cli):
    for command in (("inspect", iris_classifier), ("evaluate", iris_classifier),
                    ("predict", iris_classifier, "--input", "5.1,3.5,1.4,0.2"),
                    ("export", iris_classifier, "--format", "state-dict")):
        result = cli(*command)
        assert result.code == 0, (command, result.err)
    assert "setosa" in cli("predict", iris_classifier, "--input", "5.1,3.5,1.4,0.2").out


def test_task_sizes_fill_the_conventional_arguments(tmp_path, out):
    code = write(tmp_path, "mine.py", SEED_002.replace("input_size=4, hidden1_size=16, hidden2_size=8, num_classes=3",
                                                       "input_size, num_classes, hidden1_size=16, hidden2_size=8"))
    run = Run.new(RunConfig.for_task("wine", model=f"{code}:IrisClassifier", epochs=1, out=str(out)))
    assert run.parts.model.fc1.in_features == 13 and run.parts.model.fc3.out_features == 3


def test_a_model_whose_output_does_not_fit_is_one_line_before_training(cli, tmp_path):
    write(tmp_path, "flat.py", "import torch.nn as nn\n\nclass Flat(nn.Module):\n"
                               "    def __init__(self):\n        super().__init__()\n        self.fc = nn.Linear(4, 2)\n"
                               "    def forward(self, x):\n        return self.fc(x)\n")
    result = cli("train", "--model", "flat.py:Flat", "--out", "runs")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "gives [2, 2]" in result.err and "needs [2, 3]" in result.err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("source, expected", [
    ("class Broken(:\n", "line 1"),
    ("import torch.nn as nn\n\nclass Boom(nn.Module):\n    def __init__(self):\n        raise ValueError('no')\n",
     "ValueError: no"),
    ("import torch.nn as nn\n\nclass Boom(nn.Module):\n    pass\n\nraise SystemExit(3)\n", "SystemExit"),
    ("def Boom():\n    return 42\n", "returned int, not an nn.Module"),
])
def test_faults_in_the_users_code_are_one_line(cli, tmp_path, source, expected):
    write(tmp_path, "bad.py", source)
    name = "Broken" if "Broken" in source else "Boom"
    result = cli("train", "--model", f"bad.py:{name}", "--epochs", "1", "--out", "runs")
    assert result.code == 2 and result.err.count("\n") == 1 and expected in result.err, result.err


def test_names_that_are_not_a_model_are_refused_before_they_are_called(cli, tmp_path):
    write(tmp_path, "helpers.py", "import os\nfrom os import system\nVALUE = 3\n")
    for name in ("system", "VALUE", "Missing"):
        result = cli("train", "--model", f"helpers.py:{name}", "--epochs", "1", "--out", "runs")
        assert result.code == 2 and "helpers.py" in result.err, result.err
    result = cli("train", "--model", "os:system", "--epochs", "1", "--out", "runs")
    assert result.code == 2 and "the module os has no source file" in result.err
    result = cli("train", "--model", "json:JSONDecoder", "--epochs", "1", "--out", "runs")
    assert result.code == 2 and "json:JSONDecoder is not an nn.Module subclass" in result.err


# --- a checkpoint never chooses the code that runs ---------------------------------------------


def planted(folder: Path, marker: Path) -> Path:
    """Code that leaves ``marker`` behind if anything ever imports it, with a model in it."""
    return write(folder, "planted.py", f"open({str(marker)!r}, 'w').close()\n{SEED_002}")


def crafted(run_dir: Path, folder: Path, **config) -> Path:
    """A copy of the run's best.pt whose saved config says ``config``."""
    state = torch.load(run_dir / "best.pt", weights_only=True)
    state["config"] = {**state["config"], **config}
    path = folder / "crafted.pt"
    torch.save(state, path)
    return path


USE_COMMANDS = (("evaluate",), ("predict", "--input", "5.1,3.5,1.4,0.2"), ("export",),
                ("train", "--resume"))


def refused_by_every_command(cli, path: Path, marker: Path, words: str) -> None:
    for command, *rest in USE_COMMANDS:
        args = (command, "--resume", path, "--epochs", "999") if command == "train" else (command, path, *rest)
        result = cli(*args)
        assert result.code == 2 and result.err.count("\n") == 1, (args, result.err)
        assert words in result.err, (args, result.err)
    assert cli("inspect", path).code == 0  # shown without running any of it
    assert not marker.exists()


def test_a_checkpoint_naming_os_system_is_refused_without_importing(cli, iris_classifier, tmp_path):
    path = crafted(iris_classifier, tmp_path, model="os:system", code={"model": "0" * 64})
    refused_by_every_command(cli, path, tmp_path / "never", "not trained with by torchdeck on this machine")


def test_a_checkpoint_naming_a_file_elsewhere_is_refused_without_importing(cli, iris_classifier, tmp_path):
    from engine import usercode

    marker = tmp_path / "imported"
    code = planted(tmp_path / "downloads", marker)
    sha = usercode.sha256(usercode.parse(f"{code}:IrisClassifier"), "model")  # even with its right hash
    path = crafted(iris_classifier, tmp_path, model=f"{code}:IrisClassifier", code={"model": sha})
    refused_by_every_command(cli, path, marker, "not trained with by torchdeck on this machine")
    assert cli("predict", path, "--input", "5.1,3.5,1.4,0.2", "--code", code).code == 0  # the user's say-so
    assert marker.exists()


def test_a_changed_file_is_refused_without_importing_and_a_moved_one_is_found(cli, tmp_path):
    marker = tmp_path / "imported"
    code = write(tmp_path / "project", "seed002.py", SEED_002)
    run = Run.new(RunConfig.for_task("iris", model=f"{code}:IrisClassifier", epochs=2, out=str(tmp_path / "runs")))
    run.start().wait()
    code.write_text(f"open({str(marker)!r}, 'w').close()\n{SEED_002}")
    refused_by_every_command(cli, run.run_dir, marker, "changed since it was trained")

    code.write_text(SEED_002)
    moved = tmp_path / "elsewhere" / "seed002.py"
    moved.parent.mkdir()
    shutil.move(code, moved)
    gone = cli("predict", run.run_dir, "--input", "5.1,3.5,1.4,0.2")
    assert gone.code == 2 and f"{code} is gone" in gone.err and "--code" in gone.err
    assert cli("predict", run.run_dir, "--input", "5.1,3.5,1.4,0.2", "--code", moved).code == 0
    resumed = cli("train", "--resume", run.run_dir, "--epochs", "3", "--code", moved)
    assert resumed.code == 0, resumed.err
    assert cli("evaluate", run.run_dir / "last.pt").code == 0  # the run now records where its code is
