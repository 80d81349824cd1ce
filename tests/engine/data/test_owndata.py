"""A user's own data set (--task FILE.py:NAME): Datasets, given splits and tensors, trained for real."""

from __future__ import annotations

import json
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.config import RunConfig
from engine.data.tasks import load_task
from engine.train.run import Run
from engine.use.evaluate import evaluate
from engine.use.saved import load

CODE = '''
import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset


class Line(Dataset):
    """y = 2x + 1, drawn in __init__ with the global RNG (as seed 000's SimpleDataset is)."""

    def __init__(self, n=100):
        self.x = torch.randn(n, 1)
        self.y = 2 * self.x + 1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Shapes(Dataset):
    """Three classes of 2-D points, named, with a targets attribute."""

    classes = ["left", "middle", "right"]

    def __init__(self, per_class=20):
        self.targets = [c for c in range(3) for _ in range(per_class)]
        self.points = [np.array([c * 3.0 + np.random.rand(), np.random.rand()]) for c in self.targets]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.points[i], self.targets[i]


class Odd(Dataset):
    """Targets 1, 2 and 5, no targets attribute."""

    def __len__(self):
        return 60

    def __getitem__(self, i):
        return torch.full((4,), float(i % 3)), (1, 2, 5)[i % 3]


def three(sizes=(50, 12, 15)):
    return tuple(Line(n) for n in sizes)


def two():
    return Line(80), Line(20)


def points(n=60):
    x = torch.randn(n, 3)
    return x, (x.sum(1) > 0).long()


def whole_floats():
    x = np.random.rand(40, 2)
    return x, (x[:, 0] > 0.5).astype(np.float64)


def tensor_set():
    x = torch.randn(50, 2)
    return TensorDataset(x, x.sum(1, keepdim=True))
'''


@pytest.fixture
def code(tmp_path: Path) -> Path:
    path = tmp_path / "mydata.py"
    path.write_text(CODE)
    return path


def train(code: Path, name: str, tmp_path: Path, **options):
    run = Run.new(RunConfig.for_task(f"{code}:{name}", epochs=2, out=str(tmp_path / "out"), **options)).start()
    list(run.events)
    return run, run.wait()


def test_a_dataset_class_is_split_reproducibly_and_its_runs_evaluate_the_same(code, tmp_path, cli):
    run, finished = train(code, "Line", tmp_path, task_args={"n": 100})
    assert finished.name == "run_finished"
    meta = run.data.meta
    assert (meta.kind, meta.input_shape, meta.feature_names) == ("regression", [1], ["x0"])
    assert run.data.sizes() == {"train": 70, "val": 10, "test": 20}
    assert torch.equal(meta.x_mean, torch.zeros(1)) and torch.equal(meta.x_scale, torch.ones(1))
    first, second = (evaluate(load(run.run_dir)) for _ in range(2))
    assert first["metrics"] == pytest.approx(second["metrics"])
    assert first["metrics"]["rmse"] == pytest.approx(finished.test["rmse"], rel=1e-5)
    result = cli("predict", run.run_dir, "--input", "1", "--json")
    assert result.code == 0 and isinstance(json.loads(result.out)[0]["value"], float)


def test_building_the_data_leaves_the_global_random_state_as_it_was(code, tmp_path):
    config = RunConfig.for_task(f"{code}:Line", out=str(tmp_path))
    Run.new(config)  # trusts the code
    torch.manual_seed(123)
    np.random.seed(4)
    random.seed(5)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    data = [load_task(config).splits["test"] for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    inputs = [torch.cat([x for x, _ in split.batches(torch.arange(20), 20, 0, 1)]) for split in data]
    assert torch.equal(*inputs)


def test_given_splits_are_kept_and_a_missing_val_split_comes_out_of_train(code, tmp_path):
    run, _ = train(code, "three", tmp_path)
    assert run.data.sizes() == {"train": 50, "val": 12, "test": 15}
    run, _ = train(code, "two", tmp_path, val_fraction=0.25)
    assert run.data.sizes() == {"train": 60, "val": 20, "test": 20}


def test_tensors_and_class_names(code, tmp_path):
    run, finished = train(code, "points", tmp_path)
    assert finished.name == "run_finished" and run.data.meta.kind == "binary"
    assert run.data.meta.class_names == ["0", "1"] and run.data.sizes() == {"train": 42, "val": 6, "test": 12}
    run, finished = train(code, "Shapes", tmp_path, val_fraction=0.15, test_fraction=0.15)
    assert finished.name == "run_finished"
    meta = run.data.meta
    assert (meta.kind, meta.class_names, meta.input_shape) == ("multiclass", ["left", "middle", "right"], [2])
    for split in run.data.splits.values():  # stratified: every class in every split
        assert sorted(set(split.y.tolist())) == [0, 1, 2]


def test_class_values_are_mapped_in_order_and_target_kind_decides(code, tmp_path):
    run, _ = train(code, "Odd", tmp_path, val_fraction=0.15, test_fraction=0.15)
    assert run.data.meta.class_names == ["1", "2", "5"] and run.data.meta.kind == "multiclass"
    assert any("1, 2, 5" in note for note in run.data.notes)
    assert train(code, "whole_floats", tmp_path)[0].data.meta.kind == "regression"
    run, _ = train(code, "whole_floats", tmp_path, target_kind="classification")
    assert run.data.meta.kind == "binary" and run.data.meta.class_names == ["0", "1"]
    assert train(code, "points", tmp_path, target_kind="regression")[0].data.meta.kind == "regression"
    run, finished = train(code, "tensor_set", tmp_path)
    assert finished.name == "run_finished" and run.data.meta.kind == "regression"


def test_an_item_that_fails_during_training_fails_the_run_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr("engine.data.loader._workers", lambda samples, device: 2)  # in a worker, even here
    path = tmp_path / "flaky.py"
    path.write_text(textwrap.dedent('''
        import torch
        from torch.utils.data import Dataset

        class Flaky(Dataset):
            targets = list(range(2)) * 30  # so no pass over the items finds it first

            def __len__(self):
                return 60

            def __getitem__(self, i):
                if i == 7:
                    raise ValueError("cannot read sample seven")
                return torch.ones(3) * self.targets[i], self.targets[i]
    '''))
    run, failed = train(path, "Flaky", tmp_path)
    assert failed.name == "run_failed"
    assert failed.message == "task: item 7 of the data set failed: ValueError: cannot read sample seven"


BAD = {
    "Broken": ("class Broken(Dataset):\n    def __len__(self):\n        return 20\n"
               "    def __getitem__(self, i):\n        raise KeyError(i)",
               "task: item 0 of the data set failed: KeyError: 0"),
    "syntax": ("def broken(:\n    pass", "failed (line"),
    "wrong_type": ("def wrong_type():\n    return 'data'",
                   "task: the code returned a str; give a Dataset, Datasets (train, val, test)"),
    "empty": ("def empty():\n    return torch.zeros(0, 2), torch.zeros(0)", "task: the tensors (x, y) are empty"),
    "NotPairs": ("class NotPairs(Dataset):\n    def __len__(self):\n        return 20\n"
                  "    def __getitem__(self, i):\n        return torch.ones(2)",
                  "task: item 0 of the data set is a tensor of shape [2], not an (input, target) pair"),
    "Shapes": ("class Shapes(Dataset):\n    def __len__(self):\n        return 20\n"
               "    def __getitem__(self, i):\n        return torch.ones(2 + (i == 3)), 0.5",
               "task: the input of item 3 of the data set has shape [3], item 0's [2]"),
    "text": ("def text():\n    return np.array([['a']] * 20), np.zeros(20)", "task: the inputs x of the tensors (x, y) is"),
    "nan": ("def nan():\n    x = torch.ones(20, 2)\n    x[4, 1] = float('nan')\n    return x, torch.zeros(20)",
            "task: the input of sample 4 of the tensors (x, y) is not a finite number"),
    "huge": ("def huge():\n    return np.ones((20, 1)), np.full(20, 1e39)",
             "task: the target of sample 0 of the tensors (x, y) is not a finite number"),
    "few": ("def few():\n    return torch.ones(9, 2), torch.zeros(9)", "task: the data has only 9 samples"),
    "four": ("def four():\n    return tuple(TensorDataset(torch.ones(20, 1), torch.ones(20)) for _ in range(4))",
             "task: the code returned 4 Datasets; give (train, val, test) or (train, test)"),
    "lengths": ("def lengths():\n    return torch.ones(20, 2), torch.ones(19)",
                "task: the tensors (x, y) do not fit together: x has 20 samples and y 19"),
    "one_class": ("def one_class():\n    return torch.randn(20, 2), torch.ones(20, dtype=torch.long)",
                  "task: every target is 1; a classifier needs at least 2 classes"),
}


@pytest.mark.parametrize("name", BAD)
def test_unusable_data_is_one_line(cli, tmp_path, name):
    source, message = BAD[name]
    path = tmp_path / f"bad_{name}.py"
    path.write_text(f"import numpy as np\nimport torch\nfrom torch.utils.data import Dataset, TensorDataset\n\n"
                    f"{source}\n")
    result = cli("train", "--task", f"{path}:{name}", "--epochs", "1")
    lines = result.err.strip().splitlines()
    assert result.code == 2 and len(lines) == 1 and lines[0].startswith("torchdeck: error: "), result.err
    assert message in lines[0]
