"""Resuming with another total of epochs, and into a new directory, on real tiny runs."""

from __future__ import annotations

import csv
import math
import shutil

import pytest
import torch
from conftest import train

from engine.config import RunConfig
from engine.train.run import Run
from engine.use.evaluate import evaluate
from engine.use.saved import load

NEVER = 1e9  # a min_delta no epoch improves by: the best stays the first epoch (monitor val_loss)


def rates(run_dir) -> list[float]:
    """The learning rate of every epoch, as metrics.csv records it."""
    return [float(row["lr"]) for row in csv.DictReader(open(run_dir / "metrics.csv"))]


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def stop_at(run: Run, epoch: int, batch: int) -> Run:
    """``run`` (made with batch_events_every=0), stopped after ``batch`` of ``epoch`` (from 1)."""
    run.events.subscribe(lambda e: e.name == "batch" and (e.epoch, e.batch) == (epoch, batch)
                         and run.control.stop("test"))
    assert run.start().wait().name == "run_stopped"
    return run


def finish(run: Run) -> list:
    events = list(run.start().events)
    assert events[-1].name == "run_finished", events[-1]
    return events


# --- schedules ----------------------------------------------------------------------------


def test_cosine_resumed_with_more_epochs_decays_from_its_last_rate_to_the_new_end(out):
    four, _ = train(out, "iris", epochs=4, scheduler="cosine")
    planned = rates(four.run_dir)
    stop_at(Run.resume(four.run_dir, epochs=8, batch_events_every=0.0), epoch=6, batch=2)
    finish(Run.resume(four.run_dir))  # the same total again: the schedule goes on as replanned
    lrs = rates(four.run_dir)
    assert lrs[:4] == planned
    # From epoch 4's rate to 0 after epoch 8, on a cosine: no jump to 0, no rise.
    assert lrs[4:] == pytest.approx([planned[3] * (1 + math.cos(math.pi * k / 5)) / 2 for k in range(1, 5)])
    assert all(a > b > 0 for a, b in zip(lrs, lrs[1:]))


def test_cosine_resumed_with_its_own_total_keeps_the_planned_rates_and_weights(out):
    straight, _ = train(out, "iris", epochs=6, scheduler="cosine")
    run = stop_at(Run.new(straight.config.replace(name="stopped"), batch_events_every=0.0), epoch=3, batch=2)
    finish(Run.resume(run.run_dir))
    assert rates(run.run_dir) == rates(straight.run_dir)
    assert same_weights(weights(run.run_dir / "last.pt"), weights(straight.run_dir / "last.pt"))


@pytest.mark.parametrize("scheduler, options", [
    ("step", dict(step_size=3, gamma=0.5)),
    ("plateau", dict(gamma=0.5, scheduler_patience=0)),
])
def test_step_and_plateau_resumed_with_more_epochs_follow_a_run_planned_for_them(out, scheduler, options):
    straight, _ = train(out, "iris", epochs=8, scheduler=scheduler, **options)
    part, _ = train(out, "iris", epochs=4, scheduler=scheduler, **options)
    finish(Run.resume(part.run_dir, epochs=8))
    assert rates(part.run_dir) == rates(straight.run_dir)
    if scheduler == "step":
        assert rates(part.run_dir)[-1] == pytest.approx(0.01 * 0.5 ** 2)


# --- best weights of a run resumed into a new directory -------------------------------------


def test_a_branch_from_best_that_never_improves_gets_its_own_best_pt_and_tests_the_best_epoch(out):
    run, events = train(out, "iris", epochs=3, monitor="val_loss", min_delta=NEVER)
    assert events[-1].best["epoch"] == 1
    branch = Run.resume(run.run_dir / "best.pt", epochs=3)
    result = finish(branch)[-1]
    assert branch.run_dir == out / f"{run.run_dir.name}-from-best"
    assert result.best["epoch"] == 1 and result.test == pytest.approx(events[-1].test)
    assert same_weights(weights(branch.run_dir / "best.pt"), weights(run.run_dir / "best.pt"))
    assert evaluate(load(branch.run_dir))["loss"] == pytest.approx(result.test["loss"])  # complete on its own


def test_a_loose_checkpoint_past_its_best_epoch_starts_a_best_record_of_its_own(out, tmp_path):
    run, events = train(out, "iris", epochs=3, monitor="val_loss", min_delta=NEVER)
    loose = shutil.copy(run.run_dir / "last.pt", tmp_path / "model.pt")  # best epoch 1 stays behind
    resumed = Run.resume(loose, out=str(tmp_path / "elsewhere"), epochs=5)
    result = finish(resumed)[-1]
    assert result.best["epoch"] == 3  # the epoch it holds; no later one improves on it
    assert same_weights(weights(resumed.run_dir / "best.pt"), weights(loose))
    assert evaluate(load(resumed.run_dir))["loss"] == pytest.approx(result.test["loss"])


def test_a_loose_checkpoint_inside_an_epoch_takes_its_best_from_the_epochs_it_trains(out, tmp_path):
    config = RunConfig.for_task("iris", epochs=3, out=str(out), monitor="val_loss", min_delta=NEVER)
    run = stop_at(Run.new(config, batch_events_every=0.0), epoch=3, batch=2)
    loose = shutil.copy(run.run_dir / "last.pt", tmp_path / "model.pt")  # epoch 3 under way, best epoch 1
    resumed = Run.resume(loose, out=str(tmp_path / "elsewhere"), epochs=4)
    result = finish(resumed)[-1]
    assert result.best["epoch"] == 3
    assert torch.load(resumed.run_dir / "best.pt", weights_only=True)["epoch"] == 3
