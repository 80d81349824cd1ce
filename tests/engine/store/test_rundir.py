"""The run directory's writer: config.toml and metrics.csv are replaced whole or not at all."""

from __future__ import annotations

import csv
import errno
import math
import os

import pytest

from engine.config import RunConfig
from engine.errors import CheckpointError
from engine.events import EpochEnded
from engine.store import rundir
from engine.train.run import Run

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


def _events_of(run_dir, *lines: str) -> list:
    (run_dir / rundir.EVENTS).write_text("".join(line + "\n" for line in lines))
    return list(rundir.read_events(run_dir))


def test_read_events_yields_only_records_that_fit_their_event(tmp_path):
    import json

    good = json.dumps(EpochEnded(epochs=2, **EPOCH).to_dict())
    nan = json.dumps({**json.loads(good), "val_loss": None})  # how strict_json writes a NaN
    newer = json.dumps({"event": "from-a-newer-version", "x": 1})
    bad = [json.dumps({"event": "epoch"}), json.dumps({**json.loads(good), "epoch": "x"}),
           json.dumps({**json.loads(good), "metrics": {"accuracy": "high"}}), "[1, 2]", '"text"', "{", "[" * 100_000]
    records = _events_of(tmp_path, good, *bad, nan, newer)
    assert records == [json.loads(good), json.loads(nan), json.loads(newer)]


def test_read_events_skips_the_named_events_without_reading_them(tmp_path):
    batch = ('{"event": "batch", "time": 1, "epoch": 1, "epochs": 2, "batch": 1, "batches": 7, "step": 1, '
             '"loss": 0.5, "samples_per_s": 100.0, "eta_s": 1.0}')
    lines = [batch, '{"event": "batch", "not json at all', '{"event": "message", "text": "hi", "time": 1}']
    assert [r["event"] for r in _events_of(tmp_path, *lines)] == ["batch", "message"]
    assert [r["event"] for r in rundir.read_events(tmp_path, skip=("batch",))] == ["message"]


def test_read_events_never_follows_a_link_nor_waits_on_a_fifo(tmp_path):
    target = tmp_path / "elsewhere.jsonl"
    target.write_text('{"event": "message", "text": "from elsewhere", "time": 1}\n')
    linked, fifo = tmp_path / "linked", tmp_path / "fifo"
    linked.mkdir()
    fifo.mkdir()
    (linked / rundir.EVENTS).symlink_to(target)
    os.mkfifo(fifo / rundir.EVENTS)
    assert list(rundir.read_events(linked)) == [] and list(rundir.read_events(fifo)) == []
    assert list(rundir.read_events(tmp_path / "missing")) == []


# --- metrics.csv: one row per epoch under one header -------------------------------------------

def table(run_dir) -> list[list[str]]:
    with open(run_dir / rundir.METRICS, newline="") as handle:
        return list(csv.reader(handle))


def test_metrics_keep_one_row_per_epoch_under_one_header_across_a_resume(tmp_path):
    run = Run.new(RunConfig.for_task("diabetes", epochs=2, out=str(tmp_path))).start()
    assert run.wait().name == "run_finished"
    assert Run.resume(run.run_dir, epochs=3).start().wait().name == "run_finished"
    header, *rows = table(run.run_dir)
    assert header == ["epoch", "train_loss", "val_loss", "mae", "rmse", "r2", "lr", "seconds", "samples"]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert all(len(row) == len(header) and all(row) for row in rows)  # no sparse cells


def test_a_metrics_file_removed_during_a_run_gets_its_header_back(tmp_path):
    writer = rundir.RunWriter(rundir.create(tmp_path, "run"), ["accuracy"])
    writer.rewrite_metrics([])
    (writer.run_dir / rundir.METRICS).unlink()
    writer(EpochEnded(epochs=2, **EPOCH))
    assert table(writer.run_dir) == [["epoch", "train_loss", "val_loss", "accuracy", "lr", "seconds", "samples"],
                                     ["1", "0.5", "0.25", "0.75", "0.01", "0.1235", "120"]]


def test_an_epoch_reads_the_same_as_it_went_and_after_a_rewrite(tmp_path):
    writer = rundir.RunWriter(rundir.create(tmp_path, "run"), ["accuracy"])
    epoch = {**EPOCH, "metrics": {"accuracy": math.nan}}  # a metric a tiny split leaves undefined
    writer.rewrite_metrics([])
    writer(EpochEnded(epochs=2, **epoch))
    live = table(writer.run_dir)
    writer.rewrite_metrics([epoch])
    assert live == table(writer.run_dir)
    assert live[1][3] == "nan"
