"""Every PyTorch save format opened without running it: the seeds' three files, a Lightning
checkpoint, TorchScript, and crafted pickles in each of them (whose payload must never run)."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from engine.errors import CheckpointError
from engine.store.modelfiles import open_file


class NeuralNetwork(nn.Module):
    """The first seed tutorial's model (quickstart)."""

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(nn.Linear(28 * 28, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        return self.linear_relu_stack(self.flatten(x))


@pytest.fixture
def model() -> NeuralNetwork:
    torch.manual_seed(0)
    return NeuralNetwork()


NAMES = ["linear_relu_stack.0.weight", "linear_relu_stack.0.bias", "linear_relu_stack.2.weight",
         "linear_relu_stack.2.bias"]


def save_torchscript(model: nn.Module, path: Path) -> None:
    """The model traced and saved with torch.jit (deprecated in torch 2.10+, warnings kept quiet)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(model.eval(), torch.randn(1, 28, 28)), path)


def assert_weights(opened, model: nn.Module) -> None:
    assert list(opened.tensors) == NAMES
    for name, tensor in model.state_dict().items():
        found = opened.tensors[name]
        assert found.shape == tuple(tensor.shape) and found.dtype == "float32"
        assert torch.equal(found.read(), tensor)
    assert opened.parameters == 784 * 16 + 16 + 16 * 10 + 10


def test_a_state_dict_as_the_tutorial_saves_it(tmp_path, model):
    torch.save(model.state_dict(), tmp_path / "model_weights.pth")
    opened = open_file(tmp_path / "model_weights.pth")
    assert opened.format == "state-dict" and opened.weights_at == "" and not opened.notes
    assert_weights(opened, model)
    assert opened.tensors["linear_relu_stack.0.weight"].nbytes == 784 * 16 * 4


def test_a_training_checkpoint_dict_with_its_optimizer_and_values(tmp_path, model):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model(torch.randn(2, 28, 28)).sum().backward()
    optimizer.step()
    torch.save({"epoch": 7, "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
                "loss": 0.25}, tmp_path / "checkpoint.pth")
    opened = open_file(tmp_path / "checkpoint.pth")
    assert opened.format == "checkpoint" and opened.weights_at == "model_state"
    assert_weights(opened, model)
    assert opened.facts == {"epoch": 7, "loss": 0.25}
    [summary] = opened.optimizers
    assert summary["kind"] == "SGD" and summary["at"] == "optimizer_state" and summary["lr"] == [0.05]
    assert summary["momentum"] == 0.9 and summary["parameters"] == 4 and summary["state"] == ["momentum_buffer"]
    assert summary["state_bytes"] == opened.nbytes  # one momentum buffer per parameter


def test_a_whole_pickled_model_is_shown_without_being_loaded(tmp_path, model):
    torch.save(model, tmp_path / "whole_model.pth")
    opened = open_file(tmp_path / "whole_model.pth")
    assert opened.format == "pickle"
    assert f"{__name__}.NeuralNetwork" in opened.globals and "torch.nn.modules.linear.Linear" in opened.globals
    assert any("not loaded" in note for note in opened.notes)
    assert any("torch.save(model.state_dict()" in note for note in opened.notes)
    assert_weights(opened, model)  # read from the archive's storages, without unpickling
    assert opened.modules["linear_relu_stack.0"] == "torch.nn.modules.linear.Linear"
    assert opened.modules[""] == f"{__name__}.NeuralNetwork"


def test_a_lightning_checkpoint(tmp_path, model):
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    model(torch.randn(2, 28, 28)).sum().backward()
    optimizer.step()
    scheduler.step()
    torch.save({
        "epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()],
        "hparams_name": "kwargs", "hyper_parameters": {"lr": 3e-4, "hidden": 16, "layers": [16, 10]},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.125),
                                                                  "monitor": "val_loss"}},
        "loops": {"fit_loop": {"epoch_progress": {"total": {"completed": 4}}}},
    }, tmp_path / "last.ckpt")
    opened = open_file(tmp_path / "last.ckpt")
    assert opened.format == "lightning" and opened.weights_at == "state_dict"
    assert list(opened.tensors) == [f"model.{name}" for name in NAMES]
    facts = opened.facts
    assert facts["epoch"] == 4 and facts["global_step"] == 120 and facts["pytorch-lightning_version"] == "2.4.0"
    assert facts["hyper_parameters.lr"] == 3e-4 and facts["hyper_parameters.layers"] == [16, 10]
    assert facts["callbacks.ModelCheckpoint{'monitor': 'val_loss'}.best_model_score"] == 0.125
    assert facts["loops.fit_loop.epoch_progress.total.completed"] == 4
    [adam] = opened.optimizers
    assert adam["kind"] in ("Adam", "AdamW") and adam["step"] == 1 and adam["betas"] == (0.9, 0.999)
    assert adam["at"] == "optimizer_states.0" and adam["state"] == ["exp_avg", "exp_avg_sq", "step"]
    [step] = opened.schedulers
    assert step["kind"] == "StepLR" and step["last_epoch"] == 1 and step["step_size"] == 5


def test_torchscript_is_read_as_data(tmp_path, model):
    save_torchscript(model, tmp_path / "model.pt")
    opened = open_file(tmp_path / "model.pt")
    assert opened.format == "torchscript" and not opened.globals
    assert_weights(opened, model)
    assert opened.inputs[0]["type"] == "Tensor" and opened.outputs == [{"name": "output", "type": "Tensor"}]
    assert opened.modules["linear_relu_stack.2"] == "torch.nn.modules.linear.Linear"


def test_nested_state_dicts_are_found_and_the_model_is_the_conventional_one(tmp_path, model):
    critic = nn.Linear(3, 1)
    torch.save({"run": {"generator": {"net": model.state_dict()}, "critic": critic.state_dict()}, "step": 3},
               tmp_path / "gan.pt")
    opened = open_file(tmp_path / "gan.pt")
    assert opened.weights_at == "run.generator.net" and list(opened.tensors) == NAMES
    assert list(opened.more) == ["run.critic"] and list(opened.more["run.critic"]) == ["weight", "bias"]
    assert any("run.critic" in note for note in opened.notes)


# --- crafted files: refused or read as data, their payload never run --------------------------------


class Payload:
    """An object whose unpickling runs a command: it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _crafted(kind: str, tmp_path: Path, model: nn.Module) -> Path:
    marker = tmp_path / "marker"
    evil = Payload(marker)
    path = tmp_path / f"crafted-{kind}"
    if kind == "zip":
        torch.save({"model_state": model.state_dict(), "extra": evil}, path)
    elif kind == "legacy":
        torch.save({"model_state": model.state_dict(), "extra": evil}, path, _use_new_zipfile_serialization=False)
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0], "extra": evil}))
    elif kind == "lightning":
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": evil, "pytorch-lightning_version": "2"},
                   path)
    elif kind == "torchscript":
        save_torchscript(model, tmp_path / "ts.pt")
        with zipfile.ZipFile(tmp_path / "ts.pt") as source, zipfile.ZipFile(path, "w") as target:
            for item in source.infolist():
                data = pickle.dumps(evil, protocol=2) if item.filename.endswith("/data.pkl") else source.read(item)
                target.writestr(item, data)
    return path


@pytest.mark.parametrize("kind", ["zip", "legacy", "plain-pickle", "lightning", "torchscript"])
def test_a_crafted_pickle_never_runs(tmp_path, model, kind):
    path = _crafted(kind, tmp_path, model)
    opened = open_file(path)
    assert not (tmp_path / "marker").exists()
    assert any(name.endswith(".system") for name in opened.globals)  # os.system is posix.system or nt.system
    assert any("run" in note for note in opened.notes)
    if kind in ("zip", "lightning"):
        assert_weights(opened, model)  # the tensors beside the payload are still shown


def test_a_pickle_that_refers_to_itself_is_read_without_end(tmp_path):
    loop: list = []
    loop.append(loop)
    torch.save({"loop": loop, "weight": torch.ones(2)}, tmp_path / "loop.pt")
    opened = open_file(tmp_path / "loop.pt")
    assert list(opened.tensors) == ["weight"]


@pytest.mark.parametrize("content, expected", [
    (b"", "is empty"),
    (b"PK\x03\x04 not really a zip", "damaged"),
    (b"\x80\x04 truncated pickle", "damaged"),
    (b"just some text", "is not a model file torchdeck can read"),
])
def test_a_file_that_is_no_model_is_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as caught:
        open_file(path)
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_a_plain_folder_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        open_file(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not a torchdeck run directory or a model.s folder"):
        open_file(tmp_path)


def test_a_pickle_that_would_unpack_to_more_than_the_limit_is_refused(tmp_path, model, monkeypatch):
    from engine.store.modelfiles import torchsave

    path = _crafted("zip", tmp_path, model)
    monkeypatch.setattr(torchsave, "MAX_PICKLE", 64)  # a zip bomb's data.pkl, without writing gigabytes
    with pytest.raises(CheckpointError, match="data.pkl would unpack to .* bytes; torchdeck reads at most 64"):
        open_file(path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="is not a regular file"):
        open_file(tmp_path / "model.pt")
