"""A run's lock: held for the life of its training, it alone says whether the run is alive here."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.errors import CheckpointError, ConfigError
from engine.events import EpochEnded
from engine.store import rundir, runs
from engine.store.lock import LOCK, RunLock, locked
from engine.train.run import Run


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> Path:
    """A run of iris stopped after its first epoch (its last.pt says epoch 1 of 3)."""
    out = tmp_path_factory.mktemp("checkpoints")
    run = Run.new(RunConfig.for_task("iris", epochs=3, out=str(out), name="stopped"))
    run.events.subscribe(lambda e: isinstance(e, EpochEnded) and run.control.stop())
    assert run.start().wait().name == "run_stopped"
    return run.run_dir


@pytest.fixture
def run_dir(stopped, tmp_path) -> Path:
    """A copy of the stopped run that a test may change."""
    return Path(shutil.copytree(stopped, tmp_path / "checkpoints" / "stopped"))


def paused(run: Run, epoch: int) -> Run:
    """``run`` started and paused after ``epoch``: a run in progress until it is resumed."""
    run.events.subscribe(lambda e: isinstance(e, EpochEnded) and e.epoch == epoch and run.control.pause())
    run.start()
    for event in run.events:
        if isinstance(event, EpochEnded):
            return run
    raise AssertionError("the run ended before its first epoch did")


def test_a_run_in_progress_holds_its_lock_and_refuses_a_resume_and_a_delete(run_dir, cli):
    training = paused(Run.resume(run_dir, epochs=4), epoch=2)
    assert locked(run_dir) and runs.status(run_dir) == "running"
    assert runs.summary(run_dir)["status"] == "running"
    refusal = f"the run in {run_dir} is still training (process {os.getpid()}); stop it before resuming it"
    with pytest.raises(ConfigError, match=re.escape(refusal)):
        Run.resume(run_dir, epochs=4)
    refused = cli("train", "--resume", run_dir, "--epochs", "4")
    assert refused.code == 2 and refused.err.count("\n") == 1
    assert refused.err.startswith(f"torchdeck: error: the run in {run_dir} is still training")
    with pytest.raises(ConfigError, match="stop it before deleting it"):
        runs.delete(run_dir)
    training.control.resume()
    assert training.wait().name == "run_finished"
    assert not locked(run_dir) and runs.status(run_dir) == "finished"
    again = Run.resume(run_dir, epochs=5).start()  # a later resume in the same process, as the TUI does
    assert again.wait().name == "run_finished"
    runs.delete(run_dir)
    assert not run_dir.exists()


def started_again(run_dir: Path, **fields) -> None:
    """Record a new start of the run (its first start's record with ``fields``) and no end."""
    first = next(r for r in rundir.read_events(run_dir) if r["event"] == "run_started")
    with open(run_dir / rundir.EVENTS, "a") as handle:
        handle.write(json.dumps({**first, "start_epoch": 1, **fields}) + "\n")


def test_a_stale_pid_does_not_make_a_run_look_running(run_dir):
    """A run_started naming pid 1 (always alive) or this very process, whose lock is free, died."""
    for pid in (1, os.getpid()):
        started_again(run_dir, pid=pid, host=socket.gethostname())
        assert runs.status(run_dir) == "failed"
        listed = runs.list_runs(run_dir.parent)
        assert [(run["name"], run["status"]) for run in listed] == [("stopped", "failed")]
        assert f"(pid {pid}) ended without recording why" in listed[0]["message"]
    assert Run.resume(run_dir).start().wait().name == "run_finished"


def test_a_run_started_on_another_machine_without_an_end_is_running(run_dir):
    """Its lock lives on that machine's view of the folder; what its events say stands."""
    started_again(run_dir, pid=1, host="elsewhere.invalid")
    assert runs.status(run_dir) == "running"


def test_the_lock_of_another_process_is_seen_and_ends_with_it(run_dir):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from engine.store.lock import RunLock; "
                               "lock = RunLock(sys.argv[1]); print('held', flush=True); sys.stdin.read()", run_dir],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3])
    try:
        assert holder.stdout.readline() == "held\n"
        assert locked(run_dir) and runs.status(run_dir) == "running"
        with pytest.raises(ConfigError, match="still training"):
            Run.resume(run_dir)
        with pytest.raises(ConfigError, match="still training"):
            runs.delete(run_dir)
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert not locked(run_dir) and runs.status(run_dir) == "stopped"  # a kill -9 lets it go too
    runs.delete(run_dir)
    assert not run_dir.exists()


def test_a_new_run_is_locked_from_its_creation_until_it_ends(tmp_path):
    run = Run.new(RunConfig.for_task("iris", epochs=1, out=str(tmp_path), name="new"))
    assert locked(run.run_dir) and runs.status(run.run_dir) == "running"  # prepared, not yet started
    with pytest.raises(ConfigError, match="still training"):  # asked before it is asked for a checkpoint
        Run.resume(run.run_dir)
    assert run.start().wait().name == "run_finished"
    assert not locked(run.run_dir) and runs.status(run.run_dir) == "finished"
    assert [path.name for path in run.run_dir.iterdir() if path.name.startswith(".")] == [LOCK]


def test_a_resume_that_fails_to_prepare_lets_the_lock_go(run_dir):
    with pytest.raises(ConfigError, match="lr cannot change when resuming"):
        Run.resume(run_dir, lr=0.5)
    assert not locked(run_dir)
    config = run_dir / rundir.CONFIG
    config.unlink()
    config.mkdir()  # the config cannot be rewritten: the run fails inside Run's preparation
    with pytest.raises(CheckpointError, match="cannot write config.toml"):
        Run.resume(run_dir)
    assert not locked(run_dir)


def test_a_branch_from_best_locks_its_own_new_directory(run_dir):
    branch = Run.resume(run_dir / rundir.BEST)
    assert branch.run_dir != run_dir and locked(branch.run_dir) and not locked(run_dir)
    assert branch.start().wait().name == "run_finished"
    assert not locked(branch.run_dir)


def test_a_planted_lock_link_is_refused_and_never_followed(run_dir, tmp_path):
    target = tmp_path / "bashrc"
    target.write_text("keep me")
    (run_dir / LOCK).unlink()
    os.symlink(target, run_dir / LOCK)
    assert not locked(run_dir)
    with pytest.raises(CheckpointError, match=re.escape(f"cannot lock the run directory {run_dir}")):
        RunLock(run_dir)
    with pytest.raises(CheckpointError, match=re.escape(f"{run_dir} holds symbolic links (.lock)")):
        Run.resume(run_dir)
    assert target.read_text() == "keep me"


def test_delete_refuses_a_link_and_a_folder_that_is_not_a_run(run_dir, tmp_path):
    link = tmp_path / "link"
    os.symlink(run_dir, link)
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        runs.delete(link)
    (tmp_path / "notes").mkdir()
    with pytest.raises(CheckpointError, match="is not a torchdeck run directory"):
        runs.delete(tmp_path / "notes")
    assert run_dir.is_dir() and (tmp_path / "notes").is_dir()
