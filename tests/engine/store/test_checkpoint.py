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
