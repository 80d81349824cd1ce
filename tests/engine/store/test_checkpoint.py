"""Checkpoints: atomic writes, weights_only reads, and refusal of anything else."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from conftest import Payload, train

from engine.errors import CheckpointError
from engine.store import checkpoint


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save({"magic": checkpoint.MAGIC, "format_version": 1, "epoch": 1}, path)

    def torn_save(payload, handle):
        handle.write(b"PK\x03\x04 half a zip file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(CheckpointError, match=f"cannot write last.pt in {tmp_path}: No space left on device; "
                                              "the previous last.pt is intact"):
        checkpoint.save({"magic": checkpoint.MAGIC, "format_version": 1, "epoch": 2}, path)
    monkeypatch.undo()
    assert checkpoint.read_safely(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]  # no temporary file left behind


def test_a_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"magic": checkpoint.MAGIC, "format_version": 1, "model": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path)
    assert "refused" in str(error.value)
    assert "system" in str(error.value)  # names what it tried to load
    assert not marker.exists()


def test_a_raw_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"just some text\n", "damaged or not a PyTorch file"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_a_truncated_checkpoint_is_reported(out):
    run, _ = train(out, "iris", epochs=1)
    data = (run.run_dir / "last.pt").read_bytes()
    broken = run.run_dir / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        checkpoint.load(broken)


def test_another_pytorch_file_is_not_a_torchdeck_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a torchdeck checkpoint"):
        checkpoint.load(path)


def test_a_folder_and_a_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="is a folder"):
        checkpoint.load(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load(tmp_path / "nope.pt")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    run, _ = train(tmp_path_factory.mktemp("runs"), "iris", epochs=1)
    return torch.load(run.run_dir / "last.pt", weights_only=True)


def _refusal(saved, tmp_path, **parts) -> str:
    path = tmp_path / "edited.pt"
    payload = {**saved}
    for part, value in parts.items():
        name, _, key = part.partition("__")
        payload[name] = {**payload[name], key: value} if key else value
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path)
    return str(error.value)


@pytest.mark.parametrize("parts, complaint", [
    ({"train_state__history": [{"epoch": "x"}]}, "its train_state.history[0] has no train_loss"),
    ({"train_state__best": {"monitor": 5}}, "its train_state.best has no epoch"),
    ({"train_state__foo": 1}, "its train_state has the unknown field 'foo'"),
    ({"task__x_mean": "abc"}, "its task.x_mean is a str, not a Tensor"),
    ({"task__x_scale": torch.ones(4, dtype=torch.int64)}, "its task.x_scale is not a tensor of floating-point numbers"),
    ({"task__x_mean": torch.zeros(3)}, "its task.x_mean is not of the inputs' shape"),
    ({"task__kind": "poetry"}, "its task.kind is not one of regression, binary, multiclass"),
    ({"task__columns": [{"name": "a"}]}, "its task.columns[0] has no type"),
    ({"task__surprise": 1}, "its task is not the description of a task this torchdeck knows"),
    ({"rng__torch": torch.zeros(5056)}, "its rng.torch is not a random generator's state"),
    ({"rng__shuffle": torch.zeros(5056, dtype=torch.uint8)}, "its rng.shuffle is not a random generator's state"),
    ({"rng__ranks": [{"torch": 1}]}, "its rng.ranks[0].torch is an int, not a Tensor"),
    ({"test": {"accuracy": "high"}}, "its test['accuracy'] is a str, not a number"),
    ({"saved_at": float("nan")}, "its saved_at is not a time (seconds since 1970)"),
    ({"model": {"fc.weight": [1.0]}}, "its model['fc.weight'] is a list, not a Tensor"),
])
def test_the_contents_of_a_checkpoint_are_checked_in_one_line(saved, tmp_path, parts, complaint):
    message = _refusal(saved, tmp_path, **parts)
    assert message == f"{tmp_path / 'edited.pt'} is a damaged torchdeck checkpoint: {complaint}"


def test_a_sound_checkpoint_passes_and_a_nan_in_its_history_is_a_number(saved, tmp_path):
    row = {**saved["train_state"]["history"][0], "val_loss": float("nan")}
    path = tmp_path / "nan.pt"
    torch.save({**saved, "train_state": {**saved["train_state"], "history": [row]}}, path)
    assert checkpoint.load(path)["epoch"] == 1
