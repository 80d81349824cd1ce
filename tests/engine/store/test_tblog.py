"""Logs other tools read: ``--log tensorboard``'s event files, read back with TensorBoard's own
reader, and metrics.csv, one row per epoch under one fixed header."""

from __future__ import annotations

import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from engine.config import RunConfig
from engine.errors import ConfigError
from engine.events import EpochEnded, RunFinished
from engine.store import tblog
from engine.train.run import Run


def logged(run_dir) -> EventAccumulator:
    reader = EventAccumulator(str(run_dir / tblog.FOLDER))
    reader.Reload()
    return reader


def points(reader: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in reader.Scalars(tag)]


def started_hparams(reader: EventAccumulator):
    content = reader.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    return plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams


def trained(run: Run) -> list:
    events = list(run.start().events)
    assert run.wait().name == "run_finished"
    return events


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """An iris run of 3 epochs with the log, a batch event after every batch; (run, events)."""
    config = RunConfig.for_task("iris", epochs=3, log="tensorboard", lr=0.02, hidden=(16, 8),
                                out=str(tmp_path_factory.mktemp("runs")))
    run = Run.new(config, batch_events_every=0)
    return run, trained(run)


def test_the_log_holds_every_epoch_batch_and_test_score_at_global_steps(logged_run):
    run, events = logged_run
    reader, batches = logged(run.run_dir), run.parts.batches()
    epochs = [event for event in events if isinstance(event, EpochEnded)]
    ends = [epoch * batches for epoch in (1, 2, 3)]
    for tag, value in [("loss/train", lambda e: e.train_loss), ("loss/val", lambda e: e.val_loss),
                       ("metrics/accuracy", lambda e: e.metrics["accuracy"]), ("learning_rate", lambda e: e.lr)]:
        assert [step for step, _ in points(reader, tag)] == ends, tag
        assert [v for _, v in points(reader, tag)] == pytest.approx([value(e) for e in epochs], rel=1e-6), tag
    assert [v for _, v in points(reader, "learning_rate")] == pytest.approx([0.02] * 3)
    assert [step for step, _ in points(reader, "loss/batch")] == list(range(1, 3 * batches + 1))
    assert dict(points(reader, "loss/batch"))[batches] == pytest.approx(epochs[0].train_loss, rel=1e-6)
    test = next(event for event in events if isinstance(event, RunFinished)).test
    assert points(reader, "test/accuracy") == [(ends[-1], pytest.approx(test["accuracy"], rel=1e-6))]


def test_the_log_holds_the_runs_options_as_hparams(logged_run):
    run, _ = logged_run
    hparams = started_hparams(logged(run.run_dir))
    assert hparams["lr"].number_value == pytest.approx(0.02)
    assert hparams["epochs"].number_value == 3
    assert hparams["hidden"].string_value == "16,8"  # as typed on the command line
    assert hparams["log"].string_value == "tensorboard"
    assert hparams["batch_norm"].string_value == "false"
    assert "code" not in hparams and "name" not in hparams  # a record, not an option; unset


def test_a_resumed_run_continues_the_same_curves(tmp_path):
    run = Run.new(RunConfig.for_task("iris", epochs=3, log="tensorboard", out=str(tmp_path)))
    trained(run)
    batches = run.parts.batches()
    before = points(logged(run.run_dir), "loss/train")
    # What a killed run would have logged past its last checkpoint: the resume hides it.
    from torch.utils.tensorboard import SummaryWriter
    with SummaryWriter(str(run.run_dir / tblog.FOLDER)) as killed:
        killed.add_scalar("loss/train", 99.0, 4 * batches)
    trained(Run.resume(run.run_dir, epochs=5))
    after = points(logged(run.run_dir), "loss/train")
    assert [step for step, _ in after] == [epoch * batches for epoch in range(1, 6)]
    assert after[:3] == before and 99.0 not in [value for _, value in after]
    assert len(points(logged(run.run_dir), "test/loss")) == 2  # after epoch 3, and after epoch 5


def test_a_default_run_logs_nothing_and_its_resume_may_ask_for_the_log(tmp_path):
    run = Run.new(RunConfig.for_task("iris", epochs=1, out=str(tmp_path)))
    trained(run)
    assert not (run.run_dir / tblog.FOLDER).exists()
    resumed = Run.resume(run.run_dir, epochs=2, log="tensorboard")
    trained(resumed)
    assert [step for step, _ in points(logged(run.run_dir), "loss/train")] == [2 * run.parts.batches()]


def test_the_log_without_tensorboard_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    out = tmp_path / "checkpoints"
    with pytest.raises(ConfigError) as caught:
        Run.new(RunConfig.for_task("iris", log="tensorboard", out=str(out)))
    assert str(caught.value) == ("--log tensorboard needs the tensorboard package: "
                                 "pip install 'torchdeck[tensorboard]'")
    assert caught.value.option == "log"
    assert not out.exists()  # refused before a run directory was made
    Run.new(RunConfig.for_task("iris", epochs=1, out=str(out)))  # a run without the log needs no package


def test_an_unknown_log_is_refused_by_name():
    with pytest.raises(ConfigError, match="^log: 'wandb' is not allowed; choose one of none, tensorboard") as caught:
        RunConfig.for_task("iris", log="wandb")
    assert caught.value.option == "log"
