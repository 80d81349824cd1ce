"""The learning-rate range test on real tiny tasks: its suggestion trains, it trains nothing of
anyone else's, and it stops when the loss blows up."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import train

from engine.config import RunConfig
from engine.data.tasks import load_task
from engine.errors import ConfigError
from engine.train.lrfind import find_lr
from engine.train.models import build_model

DIGITS_FLOOR = 0.95  # the digits preset's accuracy (tests/engine/train/test_training.py)


@pytest.fixture(scope="module")
def digits_find():
    return find_lr(RunConfig.for_task("digits", device="cpu"))


def test_suggestion_on_digits_trains_digits_to_its_preset_accuracy(digits_find, out):
    preset = RunConfig.for_task("digits")
    suggestion = digits_find.suggestion
    assert suggestion is not None
    assert preset.lr / 10 <= suggestion <= preset.lr * 10
    run, events = train(out, "digits", lr=suggestion, device="cpu")
    assert events[-1].test["accuracy"] >= DIGITS_FLOOR


def test_result_holds_the_curve_and_both_rules(digits_find):
    found = digits_find
    assert len(found.lrs) == len(found.losses) <= 100
    assert found.lrs == sorted(found.lrs) and found.lrs[0] == pytest.approx(1e-7)
    assert all(np.isfinite(found.losses))
    assert found.valley is not None and found.steepest is not None
    assert found.suggestion in (found.valley, found.steepest)
    assert found.rule.startswith("valley") and "\n" not in found.rule
    assert found.stopped and set(found.to_dict()) == {"lrs", "losses", "suggestion", "steepest", "valley",
                                                       "rule", "stopped"}


def test_leaves_the_model_and_every_random_generator_as_they_were():
    config = RunConfig.for_task("iris", device="cpu")
    torch.manual_seed(123)
    np.random.seed(7)
    random.seed(5)
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    meta = load_task(config, torch.device("cpu")).meta
    torch.set_rng_state(states[0])
    before = build_model(config, meta).state_dict()
    torch.set_rng_state(states[0])
    find_lr(config, batches=30)
    assert torch.equal(torch.get_rng_state(), states[0])
    numpy_state = np.random.get_state()
    assert numpy_state[0] == states[1][0] and np.array_equal(numpy_state[1], states[1][1])
    assert numpy_state[2:] == states[1][2:]
    assert random.getstate() == states[2]
    after = build_model(config, meta).state_dict()  # the same draw: find_lr took nothing from the RNG
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_stops_early_when_the_loss_diverges():
    found = find_lr(RunConfig.for_task("iris", device="cpu"), start=1e-3, end=1e4, batches=200)
    assert found.stopped.startswith("diverged")
    assert len(found.lrs) < 200
    assert found.losses[-1] > 4 * min(found.losses) or "became" in found.stopped  # or NaN, not recorded


def test_the_whole_range_when_nothing_diverges():
    found = find_lr(RunConfig.for_task("iris", device="cpu"), start=1e-6, end=1e-4, batches=20)
    assert len(found.lrs) == 20
    assert found.lrs[-1] == pytest.approx(1e-4)
    assert found.stopped.startswith("reached the end")


def test_too_few_batches_give_no_suggestion_and_say_why():
    found = find_lr(RunConfig.for_task("iris", device="cpu"), start=1e-6, end=1e-4, batches=6)
    assert found.suggestion is None and found.steepest is None and found.valley is None
    assert found.rule.startswith("no suggestion")


def test_a_cancelled_test_ends_where_it_is():
    calls = []
    found = find_lr(RunConfig.for_task("iris", device="cpu"), batches=50, cancelled=lambda: calls.append(1) or
                    len(calls) > 10)
    assert len(found.lrs) == 10 and found.stopped.startswith("cancelled")


@pytest.mark.parametrize("options, words", [
    (dict(start=1.0, end=0.1), "0 < start < end"),
    (dict(start=0.0), "0 < start < end"),
    (dict(end=float("inf")), "finite"),
    (dict(start=float("nan")), "0 < start < end"),
    (dict(batches=1), "batches"),
])
def test_bad_ranges_are_one_line(options, words):
    with pytest.raises(ConfigError, match=words):
        find_lr(RunConfig.for_task("iris", device="cpu"), **options)
