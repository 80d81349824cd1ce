"""The run directory's writer: config.toml and metrics.csv are replaced whole or not at all."""

from __future__ import annotations

import errno
import os

import pytest

from engine.errors import CheckpointError
from engine.events import EpochEnded
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


@pytest.mark.parametrize("name", [rundir.EVENTS, rundir.METRICS])
def test_the_files_a_run_appends_to_are_never_followed_through_a_link(tmp_path, name):
    target = tmp_path / "bashrc"
    target.write_text("alias ls='ls -F'\n")
    run_dir = rundir.create(tmp_path, "run")
    (run_dir / name).symlink_to(target)
    with pytest.raises(CheckpointError, match=f"cannot write to the run directory {run_dir}: "):
        writer = rundir.RunWriter(run_dir, ["accuracy"])
        writer(EpochEnded(epochs=2, **EPOCH))
    assert target.read_text() == "alias ls='ls -F'\n"


def test_a_run_directory_holding_a_link_is_refused_in_one_line(tmp_path):
    run_dir = rundir.create(tmp_path, "run")
    rundir.refuse_links(run_dir)  # none yet
    (run_dir / rundir.EVENTS).symlink_to(tmp_path / "bashrc")
    with pytest.raises(CheckpointError, match=rf"^{run_dir} holds symbolic links \(events.jsonl\); "):
        rundir.refuse_links(run_dir)
