"""The engine on real tiny runs: seed results, events, run directory, control, resume."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import train

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.events import EpochEnded, RunFailed, RunFinished, RunStarted, RunStopped
from engine.train.run import Run
from engine.use.predict import predict
from engine.use.saved import load

# --- the seeds' results ----------------------------------------------------------------


@pytest.mark.parametrize("task, floor", [("iris", 0.93), ("breast-cancer", 0.95), ("digits", 0.95)])
def test_seed_presets_reach_the_seeds_accuracy(out, task, floor):
    run, events = train(out, task)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.test["accuracy"] >= floor


def test_linear_preset_learns_the_line(out):
    run, events = train(out, "linear")
    saved = load(run.run_dir)
    values = [p["value"] for p in predict(saved, np.array([[1.0], [2.0], [3.0]]))]
    assert values == pytest.approx([3, 5, 7], abs=0.1)


def test_iris_model_has_the_seed_architecture(out):
    run, events = train(out, "iris", epochs=1)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert started.parameters == 4 * 16 + 16 + 16 * 8 + 8 + 8 * 3 + 3
    assert started.sizes == {"train": 105, "val": 15, "test": 30}


def test_regression_metrics_are_in_target_units(out):
    run, events = train(out, "diabetes", epochs=40)
    test = events[-1].test
    assert set(test) == {"loss", "mae", "rmse", "r2"}
    assert 20 < test["mae"] < 80  # disease progression units, not standardised ones
    assert test["r2"] > 0.3


# --- events ----------------------------------------------------------------------------


def test_event_stream_order_and_contents(out):
    run, events = train(out, "wine", epochs=3)
    names = [e.name for e in events]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    for e in epochs:
        assert set(e.metrics) == {"accuracy"} and e.samples == 124 and e.seconds > 0 and e.lr == 0.01
    # batch events: the run's first batch, then at most one every batch_events_every seconds
    # (0.1 by default), never after their epoch's event (which tells that an epoch is complete)
    batches = [e for e in events if e.name == "batch"]
    assert (batches[0].epoch, batches[0].batch) == (1, 1)
    assert len(batches) <= 1 + (events[-1].time - events[0].time) / 0.1 + 1
    for e in batches:
        position = events.index(e)
        assert position < events.index(epochs[e.epoch - 1])
        assert e.epoch == 1 or events.index(epochs[e.epoch - 2]) < position


def test_events_can_be_read_with_async_for(out):
    run = Run.new(RunConfig.for_task("iris", epochs=2, out=str(out))).start()

    async def collect():
        return [event.name async for event in run.events]

    names = asyncio.run(collect())
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("epoch") == 2


# --- the run directory -----------------------------------------------------------------


def test_run_directory_contents(out):
    run, events = train(out, "iris", epochs=3, name="demo")
    folder = out / "demo"
    assert run.run_dir == folder
    assert {p.name for p in folder.iterdir()} == {"config.toml", "events.jsonl", "metrics.csv", "last.pt", "best.pt",
                                                  ".lock"}  # the lock its training process held
    assert RunConfig.from_toml(folder / "config.toml") == run.config
    recorded = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert recorded == [e.to_dict() for e in events]
    rows = list(csv.DictReader(open(folder / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx([e.val_loss for e in epochs])
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "accuracy", "lr", "seconds", "samples"}


def test_same_name_twice_gets_two_directories(out):
    first, _ = train(out, "iris", epochs=1, name="same")
    second, _ = train(out, "iris", epochs=1, name="same")
    assert first.run_dir != second.run_dir
    assert second.run_dir.name == "same-2"


def test_checkpoint_is_plain_data_read_with_weights_only(out):
    run, _ = train(out, "iris", epochs=2)
    state = torch.load(run.run_dir / "last.pt", weights_only=True)
    assert state["format_version"] == 1 and state["epoch"] == 2 and state["global_step"] == 14
    assert state["config"]["task"] == "iris"
    assert state["task"]["class_names"] == ["setosa", "versicolor", "virginica"]
    assert state["task"]["x_mean"].shape == (4,)
    assert {"torch", "shuffle", "epoch_shuffle"} <= set(state["rng"])
    assert set(state["versions"]) == {"torchdeck", "torch", "python"}
    assert len(state["train_state"]["history"]) == 2
    assert set(state["test"]) == {"loss", "accuracy"}


def test_best_checkpoint_follows_the_validation_metric(out):
    run, events = train(out, "breast-cancer", epochs=15)
    epochs = [e for e in events if isinstance(e, EpochEnded)]
    best = events[-1].best
    assert best["value"] == max(e.metrics["accuracy"] for e in epochs)
    assert torch.load(run.run_dir / "best.pt", weights_only=True)["epoch"] == best["epoch"]


# --- reproducibility and resume --------------------------------------------------------


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_weights_other_seed_other_weights(out):
    a, _ = train(out, "iris", epochs=3)
    b, _ = train(out, "iris", epochs=3)
    c, _ = train(out, "iris", epochs=3, seed=1)
    assert same_weights(weights(a.run_dir / "last.pt"), weights(b.run_dir / "last.pt"))
    assert not same_weights(weights(a.run_dir / "last.pt"), weights(c.run_dir / "last.pt"))


def test_two_epochs_then_resume_to_four_equals_four_straight(out):
    straight, _ = train(out, "iris", epochs=4)
    part, _ = train(out, "iris", epochs=2)
    resumed = Run.resume(part.run_dir, epochs=4).start()
    events = list(resumed.events)
    assert events[0].start_epoch == 2 and events[-1].name == "run_finished"
    assert resumed.run_dir == part.run_dir
    assert same_weights(weights(straight.run_dir / "last.pt"), weights(part.run_dir / "last.pt"))
    rows = list(csv.DictReader(open(part.run_dir / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def test_stop_in_the_middle_of_an_epoch_and_resume_exactly(out):
    straight, _ = train(out, "digits", epochs=2)
    run = Run.new(RunConfig.for_task("digits", epochs=2, out=str(out)), batch_events_every=0.0)  # every batch
    stop_after = 27  # epoch 2, batch 8 of 20

    def stop(event):
        if event.name == "batch" and event.step >= stop_after:
            run.control.stop("test")

    run.events.subscribe(stop)
    run.start()
    events = list(run.events)
    stopped = events[-1]
    assert isinstance(stopped, RunStopped)
    assert stopped.reason == "test" and stopped.epoch == 2 and 0 < stopped.batch < 20
    assert stopped.resume_command == f"torchdeck train --resume {run.run_dir}"
    saved = torch.load(run.run_dir / "last.pt", weights_only=True)
    assert saved["train_state"]["batch"] == stopped.batch
    resumed = Run.resume(run.run_dir).start()
    assert list(resumed.events)[-1].name == "run_finished"
    assert same_weights(weights(straight.run_dir / "last.pt"), weights(run.run_dir / "last.pt"))


# --- when checkpoints are written ---------------------------------------------------------


def written(events, kind: str = "last") -> list[int]:
    return [e.epoch for e in events if e.name == "checkpoint" and e.kind == kind]


def test_save_every_zero_writes_last_every_epoch_and_best_when_it_improves(out):
    run, events = train(out, "iris", epochs=4, save_every=0)
    improved = [e.epoch for e in events if isinstance(e, EpochEnded) and e.improved]
    assert written(events) == [1, 2, 3, 4, 4]  # the last one adds the test metrics
    assert written(events, "best") == improved


def test_a_short_run_writes_its_checkpoints_before_testing_and_last_again_with_the_scores(out):
    run, events = train(out, "iris", epochs=6, save_every=3600)
    best = events[-1].best["epoch"]
    assert written(events) == [6, 6] and written(events, "best") == [best]
    assert torch.load(run.run_dir / "best.pt", weights_only=True)["epoch"] == best
    final = torch.load(run.run_dir / "last.pt", weights_only=True)
    assert final["epoch"] == 6 and final["test"] == events[-1].test


def test_a_checkpoint_written_between_batches_resumes_exactly(out, tmp_path):
    straight, _ = train(out, "digits", epochs=2)
    run = Run.new(RunConfig.for_task("digits", epochs=2, out=str(out), save_every=1e-9))  # after every batch
    copy = tmp_path / "copy"

    def keep_mid_epoch_copy(event):  # what a kill -9 at this moment would leave (its events say "running")
        if event.name == "checkpoint" and not copy.exists():
            state = torch.load(event.path, weights_only=True)["train_state"]
            if state["epoch"] == 1 and state["batch"] == 8:
                shutil.copytree(run.run_dir, copy, ignore=shutil.ignore_patterns("events.jsonl"))

    run.events.subscribe(keep_mid_epoch_copy)
    run.start()
    assert run.wait().name == "run_finished" and copy.exists()
    resumed = Run.resume(copy).start()
    assert resumed.wait().name == "run_finished"
    assert same_weights(weights(straight.run_dir / "last.pt"), weights(copy / "last.pt"))


def test_resume_only_changes_what_may_change(out):
    run, _ = train(out, "iris", epochs=1)
    with pytest.raises(ConfigError, match="lr cannot change when resuming"):
        Run.resume(run.run_dir, lr=0.5)
    with pytest.raises(ConfigError, match="already completed 1 of 1 epochs"):
        Run.resume(run.run_dir)


# --- control, early stopping, divergence ------------------------------------------------


def test_pause_holds_training_until_resumed(out):
    run = Run.new(RunConfig.for_task("iris", epochs=3, out=str(out)))
    seen = []

    def pause_once(event):
        seen.append(event.name)
        if event.name == "epoch" and event.epoch == 1:
            run.control.pause()

    run.events.subscribe(pause_once)
    run.start()
    deadline = 200
    while "message" not in seen and deadline:  # the loop announces the pause
        deadline -= 1
        run.thread.join(0.01)
    assert run.control.paused and run.thread.is_alive()
    epochs_while_paused = seen.count("epoch")
    run.thread.join(0.3)
    assert seen.count("epoch") == epochs_while_paused == 1
    run.control.resume()
    assert run.wait().name == "run_finished"
    assert seen.count("epoch") == 3


def test_stop_while_paused_ends_the_run(out):
    run = Run.new(RunConfig.for_task("iris", epochs=50, out=str(out)))
    run.control.pause()
    run.start()
    run.thread.join(0.2)
    run.control.stop()
    assert isinstance(run.wait(), RunStopped)
    assert (run.run_dir / "last.pt").exists()


def test_early_stopping_stops_and_keeps_the_best(out):
    run, events = train(out, "diabetes", epochs=300, patience=5)
    finished = events[-1]
    assert finished.reason == "early_stopping"
    assert finished.epochs_done == finished.best["epoch"] + 5 < 300
    assert any(e.name == "message" and "early stopping" in e.text for e in events)


def test_early_stopping_counts_ties_min_delta_and_patience():
    from engine.train.stopping import EarlyStopping

    policy = EarlyStopping("accuracy", patience=2, min_delta=0.01)
    assert policy.update(1, 0.80, val_loss=0.5) == (True, False, "")
    assert policy.update(2, 0.805, val_loss=0.6)[0] is False  # a gain below min_delta
    assert policy.update(3, 0.80, val_loss=0.4)[0] is True  # equal accuracy, lower loss: better
    assert policy.update(4, 0.79, val_loss=0.3) == (False, False, "")
    improved, stop, reason = policy.update(5, 0.80, val_loss=0.4)
    assert (improved, stop) == (False, True)
    assert reason == "early stopping: accuracy has not improved for 2 epochs (best 0.8000 at epoch 3)"
    resumed = EarlyStopping("accuracy", patience=3, min_delta=0.01)  # patience may change on resume
    resumed.load_state_dict(policy.state_dict())
    assert resumed.best["epoch"] == 3 and resumed.bad_epochs == 2 and not resumed.exhausted
    assert EarlyStopping("val_loss", 0, 0.0).update(1, 1.0, 1.0) == (True, False, "")  # patience 0: never stops


def test_divergence_fails_clearly_and_keeps_the_last_good_checkpoint(out):
    run = Run.new(RunConfig.for_task("linear", epochs=5, optimizer="sgd", out=str(out)))

    def explode(event):  # after a good first epoch, make the next steps diverge
        if event.name == "epoch" and event.epoch == 1:
            run.parts.optimizer.param_groups[0]["lr"] = 1e30

    run.events.subscribe(explode)
    run.start()
    failed = run.wait()
    assert isinstance(failed, RunFailed)
    assert "at epoch 2, batch" in failed.message and "try a lower --lr" in failed.message
    good = torch.load(run.run_dir / "last.pt", weights_only=True)
    assert good["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in good["model"].values())
    assert torch.load(run.run_dir / "best.pt", weights_only=True)["epoch"] == 1


def test_missing_cuda_is_a_clear_error(out):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no usable CUDA GPU"):
        Run.new(RunConfig.for_task("iris", device="cuda", out=str(out)))


def test_auto_device_prefers_cuda_when_available():
    from engine.device import resolve_device

    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected


def test_a_run_leaves_torchs_thread_setting_as_it_found_it(out):
    before = torch.get_num_threads()
    train(out, "iris", epochs=2)  # a tiny model trains on one thread
    assert torch.get_num_threads() == before


def test_batch_events_report_finite_progress(out):
    run = Run.new(RunConfig.for_task("digits", epochs=1, out=str(out)), batch_events_every=0.0).start()
    events = list(run.events)
    batches = [e for e in events if e.name == "batch"]
    assert [e.batch for e in batches] == list(range(1, 21)) and batches[-1].batches == 20
    assert all(math.isfinite(e.loss) and e.samples_per_s > 0 for e in batches)
    assert batches[-1].eta_s == 0


def test_resuming_from_best_branches_instead_of_overwriting_last(out):
    run, events = train(out, "breast-cancer", epochs=12)
    best_epoch = events[-1].best["epoch"]
    last_before = (run.run_dir / "last.pt").read_bytes()
    branch = Run.resume(run.run_dir / "best.pt", epochs=best_epoch + 1).start()
    assert branch.wait().name == "run_finished"
    assert branch.run_dir == out / f"{run.run_dir.name}-from-best"
    assert (run.run_dir / "last.pt").read_bytes() == last_before


def test_batch_norm_skips_a_lone_last_sample(out):
    run, events = train(out, "iris", epochs=2, batch_norm=True, batch_size=8)  # 105 = 13 * 8 + 1
    assert events[-1].name == "run_finished"
    assert events[0].batches == 13
    assert any(e.name == "message" and e.level == "warning" and "left-over" in e.text for e in events)
    assert [e.samples for e in events if isinstance(e, EpochEnded)] == [104, 104]


def test_splits_too_small_for_the_task_are_refused(out):
    from engine.errors import DataError

    with pytest.raises(DataError, match="val_fraction: 0.01 of 150 samples is fewer than the 3"):
        Run.new(RunConfig.for_task("iris", val_fraction=0.01, out=str(out)))
