"""Sweeps: --param specs, a sweep on iris against its preset, pruning, and trials as run directories."""

from __future__ import annotations

import pytest
from conftest import train

from engine.config import RunConfig
from engine.errors import CheckpointError, ConfigError, TorchdeckError
from engine.store import runs
from engine.use.sweep import Sweep, leaderboard, parse_param

optuna = pytest.importorskip("optuna")


def test_param_specs():
    lr = parse_param("lr=1e-4..1e-1:log")
    assert (lr.low, lr.high, lr.log, lr.choices) == (pytest.approx(1e-4), pytest.approx(0.1), True, ())
    dropout = parse_param("dropout=0..0.5")
    assert isinstance(dropout.low, float) and dropout.high == pytest.approx(0.5) and not dropout.log
    epochs = parse_param("epochs=5..20")
    assert (epochs.low, epochs.high) == (5, 20) and isinstance(epochs.low, int)
    hidden = parse_param("hidden=64,128,256")
    assert hidden.choices == ("64", "128", "256") and hidden.value("128") == (128,)
    assert parse_param("hidden=16,8|32").value("16,8") == (16, 8)
    assert parse_param("optimizer=adam,sgd").choices == ("adam", "sgd")


@pytest.mark.parametrize("spec, expected", [
    ("lrr=1e-4..1e-1", "did you mean 'lr'?"),
    ("lr", "NAME=LOW..HIGH"),
    ("lr=0.1..0.01", "low end must be below"),
    ("lr=0..1:log", "log range must start above 0"),
    ("lr=1e-4..1e-1:cubic", "only ':log'"),
    ("optimizer=adam..sgd", "not a number"),
    ("epochs=1.5..3", "whole number"),
    ("hidden=a,b", "whole numbers"),
    ("name=a,b", "names each trial's directory"),
])
def test_bad_param_specs_are_one_line(spec, expected):
    with pytest.raises(ConfigError) as caught:
        parse_param(spec)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_bad_sweeps_are_refused_before_any_trial(tmp_path):
    config = RunConfig.for_task("iris", epochs=3)
    with pytest.raises(ConfigError, match="optimizer"):
        Sweep.create(config, ["optimizer=adam,nosuch"], 2, out=tmp_path)
    with pytest.raises(ConfigError, match="lr"):
        Sweep.create(config, ["lr=-1..1"], 2, out=tmp_path)
    with pytest.raises(ConfigError, match="at least one --param"):
        Sweep.create(config, [], 2, out=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_sweep_on_iris_is_as_good_as_the_preset(tmp_path):
    epochs = 5
    _, events = train(tmp_path / "preset", epochs=epochs)
    preset = events[-1].best["value"]
    sweep = Sweep.create(RunConfig.for_task("iris", epochs=epochs), ["lr=1e-3..1e-1:log", "hidden=16,32,64"], 6,
                         out=tmp_path, name="sweep")
    seen = []
    sweep.run(jobs=2, on_trial=seen.append)
    board = leaderboard(sweep.folder)
    assert len(board) == 6 and sorted(row["number"] for row in board) == list(range(6))
    assert {row["number"] for row in seen} == set(range(6))
    best = sweep.best()
    assert best == board[0] and best["value"] >= preset - 1e-9
    values = [row["value"] for row in board if row["state"] == "complete"]
    assert values == sorted(values, reverse=True)  # best first: accuracy is maximised
    for row in board:
        assert row["run_dir"] == sweep.folder / f"trial-{row['number']:04d}"
        summary = runs.summary(row["run_dir"])
        # the median pruner may stop a trial after its fifth: a pruned trial's run reads as stopped
        assert summary["status"] == {"complete": "finished", "pruned": "stopped"}[row["state"]]
        assert summary["config"]["lr"] == pytest.approx(row["params"]["lr"])
        assert row["duration"] > 0
    assert sweep.trial_config(best).hidden == (int(best["params"]["hidden"]),)


class PruneTheSecond(optuna.pruners.BasePruner):
    """Prunes trial 1 at its first report and lets every other trial run."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1


class PruneAtTheLastEpoch(optuna.pruners.BasePruner):
    """Prunes trial 1 at its fourth (last) epoch, when nothing is left to save."""

    def prune(self, study, trial) -> bool:
        return trial.number == 1 and trial.last_step == 4


def test_a_trial_pruned_at_its_last_epoch_is_complete_as_its_run(tmp_path):
    """The median pruner can judge a trial at its last epoch: its run finished all the same, so
    the trial counts as complete with its value, as its run directory says (CI saw a pruned
    trial whose run read as finished)."""
    sweep = Sweep.create(RunConfig.for_task("iris", epochs=4), ["lr=1e-3..1e-1:log"], 2, out=tmp_path,
                         pruner=PruneAtTheLastEpoch())
    sweep.run()
    board = {row["number"]: row for row in leaderboard(sweep.folder)}
    assert {number: row["state"] for number, row in board.items()} == {0: "complete", 1: "complete"}
    summary = runs.summary(sweep.folder / "trial-0001")
    assert summary["status"] == "finished" and summary["epochs_done"] == 4
    assert board[1]["value"] == pytest.approx(summary["best"]["value"])


def test_a_pruned_trial_is_recorded_as_pruned(tmp_path):
    sweep = Sweep.create(RunConfig.for_task("iris", epochs=4), ["lr=1e-3..1e-1:log"], 3, out=tmp_path,
                         pruner=PruneTheSecond())
    sweep.run()
    states = {row["number"]: row["state"] for row in leaderboard(sweep.folder)}
    assert states == {0: "complete", 1: "pruned", 2: "complete"}
    pruned = runs.summary(sweep.folder / "trial-0001")
    assert pruned["status"] == "stopped" and "pruned by the sweep at epoch 1" in pruned["reason"]
    assert 1 <= pruned["epochs_done"] < 4  # the stop is asked for at epoch 1's event; a tiny epoch may end meanwhile


def test_resuming_a_sweep_goes_on_to_a_new_total(tmp_path):
    sweep = Sweep.create(RunConfig.for_task("iris", epochs=2), ["optimizer=adam,sgd"], 2, out=tmp_path, name="s")
    sweep.run()
    again = Sweep.open(tmp_path / "s", trials=3)
    assert again.params == sweep.params and again.config == sweep.config
    again.run()
    assert sorted(row["number"] for row in leaderboard(tmp_path / "s")) == [0, 1, 2]


def test_a_folder_that_is_no_sweep_is_one_line(tmp_path):
    sweep = Sweep.create(RunConfig.for_task("iris", epochs=1), ["lr=0.01..0.1"], 1, out=tmp_path, name="s")
    (sweep.folder / "study.db").write_bytes(b"not a database, but a file named like one\n" * 10)
    for read in (lambda: Sweep.open(sweep.folder), lambda: leaderboard(sweep.folder)):
        with pytest.raises(CheckpointError, match="is not a readable torchdeck sweep study"):
            read()
    with pytest.raises(TorchdeckError, match="not a sweep folder"):
        Sweep.open(tmp_path)


def test_a_study_in_a_database_of_its_own_is_named_again_to_resume(tmp_path):
    """--storage URL (several machines' shared study): the folder records that there is one,
    never where, so a sweep folder from elsewhere cannot choose where torchdeck writes."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    sweep = Sweep.create(RunConfig.for_task("iris", epochs=1), ["lr=0.01..0.1"], 1, out=tmp_path, name="s",
                         storage=url)
    sweep.run()
    assert (tmp_path / "shared.db").is_file() and not (tmp_path / "s" / "study.db").exists()
    assert url not in (tmp_path / "s" / "sweep.toml").read_text()
    with pytest.raises(TorchdeckError, match="give its URL with --storage"):
        Sweep.open(tmp_path / "s")
    again = Sweep.open(tmp_path / "s", trials=2, storage=url)
    again.run()
    assert [row["state"] for row in leaderboard(tmp_path / "s", storage=url)] == ["complete", "complete"]
