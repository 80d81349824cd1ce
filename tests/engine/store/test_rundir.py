"""The run directory's writer: config.toml and metrics.csv are replaced whole or not at all."""

from __future__ import annotations

import errno
import os

import pytest

from engine.errors import CheckpointError
from engine.store import rundir

EPOCH = {"epoch": 1, "train_loss": 0.5, "val_loss": 0.25, "metrics": {"accuracy": 0.75}, "lr": 0.01,
         "seconds": 0.123456, "samples": 120}


@pytest.fixture
def writer(tmp_path):
    return rundir.RunWriter(rundir.create(tmp_path, "run"), ["accuracy"])


def test_metrics_are_rewritten_as_one_csv(writer):
    writer.rewrite_metrics([EPOCH, {**EPOCH, "epoch": 2}])
    assert (writer.run_dir / rundir.METRICS).read_text().splitlines() == [
        "epoch,train_loss,val_loss,accuracy,lr,seconds,samples",
        "1,0.5,0.25,0.75,0.01,0.1235,120",
        "2,0.5,0.25,0.75,0.01,0.1235,120",
    ]


def failing_disk(monkeypatch):
    """From now on the disk accepts data but cannot flush it (the write fails midway)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)


def test_a_failed_rewrite_of_the_metrics_keeps_the_previous_file(writer, monkeypatch):
    writer.rewrite_metrics([EPOCH])
    before = (writer.run_dir / rundir.METRICS).read_bytes()
    failing_disk(monkeypatch)
    with pytest.raises(CheckpointError, match=f"cannot write metrics.csv in {writer.run_dir}: No space left on "
                                              f"device; the previous metrics.csv is intact"):
        writer.rewrite_metrics([EPOCH, {**EPOCH, "epoch": 2}])
    assert (writer.run_dir / rundir.METRICS).read_bytes() == before
    assert not list(writer.run_dir.glob(".*.tmp"))


def test_a_failed_write_of_the_config_keeps_the_previous_file(writer, monkeypatch):
    writer.write_config('task = "iris"\n')
    failing_disk(monkeypatch)
    with pytest.raises(CheckpointError, match=f"cannot write config.toml in {writer.run_dir}: No space left"):
        writer.write_config('task = "wine"\n')
    assert (writer.run_dir / rundir.CONFIG).read_text() == 'task = "iris"\n'
    assert not list(writer.run_dir.glob(".*.tmp"))
