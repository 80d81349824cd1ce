"""Comparing runs: three real tiny runs that differ only in their learning rate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import train

from engine.errors import CheckpointError
from engine.store import rundir, runs
from engine.use.compare import compare, differing_options

RATES = (0.001, 0.01, 0.05)


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> list[Path]:
    """Three finished iris runs of 3 epochs, one per learning rate in RATES."""
    out = tmp_path_factory.mktemp("runs")
    return [train(out, epochs=3, lr=lr, name=f"lr-{lr}")[0].run_dir for lr in RATES]


def test_exactly_the_learning_rate_differs_and_the_best_comes_first(three):
    result = compare(three)
    assert result["differing"] == ["lr"]
    assert result["monitor"] == "accuracy" and result["higher_is_better"]
    values = [run["best"]["value"] for run in result["runs"]]
    assert values == sorted(values, reverse=True)
    assert sorted(run["options"]["lr"] for run in result["runs"]) == pytest.approx(sorted(RATES))
    for run in result["runs"]:
        assert run["options"] == {"lr": run["config"]["lr"]}
        assert [row["epoch"] for row in run["history"]] == [1, 2, 3]
        assert all(row["val_loss"] > 0 and "accuracy" in row["metrics"] for row in run["history"])
        assert set(run["test"]) == {"loss", "accuracy"} and run["seconds"] > 0


def test_summary_holds_the_finished_runs_test_metrics_and_seconds(three):
    finished = [r for r in rundir.read_events(three[0]) if r["event"] == "run_finished"][-1]
    found = runs.summary(three[0])
    assert found["test"] == pytest.approx(finished["test"])
    assert found["seconds"] == pytest.approx(finished["seconds"])
    assert found["epochs_done"] == 3 and found["status"] == "finished"


def test_a_summary_read_whole_agrees_with_one_read_from_the_ends(three, tmp_path):
    """A trailing line that is not an event sends summary to read every line: same answer."""
    copy = Path(shutil.copytree(three[1], tmp_path / "copy"))
    with open(copy / rundir.EVENTS, "a") as handle:
        handle.write('{"event": "nonsense"\n')
    whole, ends = runs.summary(copy), runs.summary(three[1])
    for key in ("best", "test", "epochs_done", "status", "reason", "started", "parameters"):
        assert whole[key] == ends[key], key
    assert whole["seconds"] == pytest.approx(ends["seconds"])


def test_lower_is_better_for_a_loss_monitor(tmp_path):
    out = tmp_path / "runs"
    dirs = [train(out, epochs=2, lr=lr, monitor="val_loss", name=f"m{lr}")[0].run_dir for lr in (0.001, 0.05)]
    result = compare(dirs)
    assert result["monitor"] == "val_loss" and not result["higher_is_better"]
    losses = [run["best"]["value"] for run in result["runs"]]
    assert losses == sorted(losses)
    assert result["differing"] == ["lr"]


def test_a_path_that_is_not_a_run_is_one_error(three, tmp_path):
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "empty", tmp_path / "missing", three[0] / rundir.CONFIG):
        with pytest.raises(CheckpointError, match="not a torchdeck run directory"):
            compare([three[0], path])
    with pytest.raises(CheckpointError):
        compare([])


def test_options_one_config_lacks_differ_and_names_never_do():
    configs = [{"name": "a", "out": "x", "lr": 0.1, "seed": 1}, {"name": "b", "out": "y", "lr": 0.1}]
    assert differing_options(configs) == ["seed"]


def test_a_resumed_epoch_replaces_the_one_it_reran(three, tmp_path):
    copy = Path(shutil.copytree(three[2], tmp_path / "resumed"))
    lines = (copy / rundir.EVENTS).read_text().splitlines()
    epoch3 = next(json.loads(line) for line in lines if '"epoch": 3,' in line and line.startswith('{"event": "epoch"'))
    again = {**epoch3, "val_loss": 123.0, "time": epoch3["time"] + 100}
    started = json.loads(lines[0])
    with open(copy / rundir.EVENTS, "a") as handle:
        handle.write(json.dumps({**started, "start_epoch": 2, "time": started["time"] + 99}) + "\n")
        handle.write(json.dumps(again) + "\n")
    rows = compare([copy])["runs"][0]["history"]
    assert [row["epoch"] for row in rows] == [1, 2, 3] and rows[-1]["val_loss"] == 123.0
