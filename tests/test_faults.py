"""Faults: kill -9 at random moments, signals, dead processes, full or read-only disks, NaN losses.

Real faults run in real processes (a ``torchdeck train`` subprocess killed with SIGKILL, or sent
SIGHUP); faults no test can cause for real (a full disk, a loss that turns NaN at one exact batch)
are injected into real tiny runs in this process. What is checked is what the user keeps: a
``last.pt`` that loads, a ``--resume`` that continues to the very weights of an uninterrupted run,
a status that says what happened, and one clear line when something cannot be done.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pty
import random
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import train

from engine.config import RunConfig
from engine.events import CheckpointSaved, RunFailed
from engine.store import checkpoint, rundir, runs
from engine.train.run import Run

# Checkpoints are written every `save_every` seconds (and at every stop, failure and end). The
# guarantees hold at any rate; these tests ask for frequent writes so that there is something to keep.
SAVES = {"save_every": 0}  # at every epoch end
EVERY_EPOCH = ["--save-every", "0"]
OFTEN = ["--save-every", "0.05"]  # mid-epoch too: kills find more kinds of state

# `torchdeck train` with one test hook: with TORCHDECK_TEST_STALL_SAVE=N, the N-th checkpoint
# write of the process writes half its bytes to the temporary file, creates the file named by
# TORCHDECK_TEST_STALLED and hangs there, so a test can kill the process in mid-write.
TORCHDECK = [sys.executable, "-c", """
import io, os, time, torch
stall_at, saves = int(os.environ.get("TORCHDECK_TEST_STALL_SAVE") or 0), [0]
real_save = torch.save
def stalling_save(payload, handle, *args, **kwargs):
    saves[0] += 1
    if saves[0] != stall_at:
        return real_save(payload, handle, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(payload, buffer, *args, **kwargs)
    handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    handle.flush()
    open(os.environ["TORCHDECK_TEST_STALLED"], "w").close()
    time.sleep(600)
torch.save = stalling_save
from cli.main import main
main()
"""]


LAUNCHED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_process_left_behind():
    yield
    while LAUNCHED:
        process = LAUNCHED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def launch(cwd: Path, *args: str, stall_at: int = 0, under: tuple[str, ...] = (),
           stdout=subprocess.PIPE) -> subprocess.Popen:
    """``torchdeck train ARGS`` in ``cwd`` (run by the command ``under``, such as nohup), its
    output piped; see TORCHDECK for ``stall_at``."""
    (cwd / "stalled").unlink(missing_ok=True)
    env = {**os.environ, "TORCHDECK_TEST_STALL_SAVE": str(stall_at), "TORCHDECK_TEST_STALLED": str(cwd / "stalled")}
    process = subprocess.Popen([*under, *TORCHDECK, "train", *map(str, args)], cwd=cwd, env=env,
                               stdout=stdout, stderr=subprocess.PIPE, text=True)
    LAUNCHED.append(process)
    return process


def wait_until(condition, process: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll ``condition`` until it holds (True) or the process ends by itself (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, "timed out waiting for the training process"
        time.sleep(0.005)
    return True


def recorded(run_dir: Path, name: str, **fields) -> bool:
    """Whether the run directory has recorded an event ``name`` with these ``fields``."""
    return any(record.get("event") == name and all(record.get(k) == v for k, v in fields.items())
               for record in rundir.read_events(run_dir, skip=("batch",)))


def event_lines(run_dir: Path) -> int:
    try:
        return (run_dir / rundir.EVENTS).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_9(process: subprocess.Popen) -> None:
    process.kill()
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --- kill -9 at random moments, many times ----------------------------------------------

EPOCHS, BATCH_SIZE = 20, 4  # digits: 315 batches an epoch (~0.15 s): long enough for every kill round
KILL_ROUNDS = 6


def test_kill_9_at_random_moments_then_resume_ends_with_the_uninterrupted_weights(cli, tmp_path):
    reference = Run.new(RunConfig.for_task("digits", epochs=EPOCHS, batch_size=BATCH_SIZE,
                                           out=str(tmp_path / "reference"), **SAVES)).start()
    assert reference.wait().name == "run_finished"
    run_dir = tmp_path / "checkpoints" / "k"
    fresh = ["--task", "digits", "--epochs", EPOCHS, "--batch-size", BATCH_SIZE, "--name", "k", *OFTEN]
    rng = random.Random(20261121)
    kills, ended = [], None
    for round_ in range(KILL_ROUNDS + 1):  # the kill rounds, then one that runs to the end
        if (run_dir / rundir.LAST).exists():
            args = ["--resume", "checkpoints/k"]
        else:
            if run_dir.exists():  # killed before its first checkpoint: nothing to resume
                refused = cli("train", "--resume", "checkpoints/k")
                assert refused.code == 2 and refused.err.count("\n") == 1, refused.err
                assert "holds no checkpoint yet: the run failed before its first epoch ended (its process " \
                       "was killed or crashed); start it again with: torchdeck train --config " in refused.err
                shutil.rmtree(run_dir)
            args = fresh
        # The first round always dies inside the very first checkpoint write; later rounds in a
        # random checkpoint write, or after a random number of recorded events plus a random delay.
        how = "write" if round_ == 0 else rng.choice(["write", "events"])
        if round_ == KILL_ROUNDS:
            process, reached = launch(tmp_path, *args), False
        elif how == "write":
            process = launch(tmp_path, *args, stall_at=1 if round_ == 0 else rng.randint(1, 8))
            reached = wait_until(lambda: (tmp_path / "stalled").exists(), process)
        else:
            before, count, delay = event_lines(run_dir), rng.randint(1, 16), rng.uniform(0, 0.05)
            process = launch(tmp_path, *args)
            reached = wait_until(lambda: event_lines(run_dir) >= before + count, process)
            time.sleep(delay)
        if not reached or process.poll() is not None:  # the run ended before a kill came
            ended = ended_by_itself(process)
            break
        kill_9(process)
        if runs.summary(run_dir)["status"] == "finished":  # the kill came as the finished process exited
            ended = "finished"
            break
        kills.append((how, _position(run_dir / rundir.LAST)))
        for name in (rundir.LAST, rundir.BEST):  # whatever the moment, the checkpoints on disk load
            if (run_dir / name).exists():
                checkpoint.load(run_dir / name)
        if how == "write":  # the torn write is only ever the temporary file
            assert list(run_dir.glob(".*.pt.*.tmp")), "the kill did not land in a checkpoint write"
        assert runs.summary(run_dir)["status"] == "failed"
    print(f"kills (how, (epochs done, next batch) of last.pt after the kill): {kills}; then {ended}")
    assert len(kills) >= 4, kills
    assert ended == "finished" and runs.summary(run_dir)["status"] == "finished"
    assert not list(run_dir.glob(".*.tmp"))  # the killed writes' temporary files were cleared away
    for name in (rundir.LAST, rundir.BEST):
        ours, theirs = checkpoint.load(run_dir / name), checkpoint.load(reference.run_dir / name)
        assert ours["epoch"] == theirs["epoch"] and ours["global_step"] == theirs["global_step"]
        assert same_tensors(ours["model"], theirs["model"]), f"{name} differs from the uninterrupted run's"
    rows = (run_dir / rundir.METRICS).read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, EPOCHS + 1))


def ended_by_itself(process: subprocess.Popen) -> str:
    """A run that was not killed (resumed after any earlier kill) ends finished."""
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return "finished"


def _position(path: Path) -> tuple[int, int] | None:
    """(epochs done, next batch) of the checkpoint at ``path``, if there is one."""
    if not path.exists():
        return None
    state = checkpoint.load(path)
    return state["epoch"], state["train_state"]["batch"]


def test_killed_while_writing_the_final_checkpoint_resume_finishes_the_run(cli, tmp_path):
    """The last moment a kill can hurt: all epochs done, the final last.pt (with the test scores)
    half written. Resuming runs no epoch: it evaluates the test split and writes the final save."""
    counted = Run.new(RunConfig.for_task("iris", epochs=3, out=str(tmp_path / "count"), **SAVES))
    saves = []
    counted.events.subscribe(lambda e: isinstance(e, CheckpointSaved) and saves.append(e))
    assert counted.start().wait().name == "run_finished"
    process = launch(tmp_path, "--task", "iris", "--epochs", "3", "--name", "end", *EVERY_EPOCH, stall_at=len(saves))
    assert wait_until(lambda: (tmp_path / "stalled").exists(), process)
    kill_9(process)
    run_dir = tmp_path / "checkpoints" / "end"
    assert "test" not in checkpoint.load(run_dir / rundir.LAST) and runs.status(run_dir) == "failed"
    resumed = cli("train", "--resume", run_dir)
    assert resumed.code == 0, resumed.err
    assert runs.status(run_dir) == "finished" and "test" in checkpoint.load(run_dir / rundir.LAST)


def test_killed_after_early_stopping_decided_resume_finishes_without_training_more(out, tmp_path):
    run = Run.new(RunConfig.for_task("diabetes", epochs=300, patience=3, out=str(out), **SAVES))
    copy = tmp_path / "copy"

    def keep_copy(event):  # the run directory as a kill before the final save would leave it
        if event.name == "message" and "early stopping" in event.text:
            shutil.copytree(run.run_dir, copy, ignore=shutil.ignore_patterns(rundir.EVENTS))

    run.events.subscribe(keep_copy)
    finished = run.start().wait()
    assert finished.reason == "early_stopping"
    resumed = Run.resume(copy).start()
    ended = resumed.wait()
    assert ended.name == "run_finished" and ended.reason == "early_stopping"
    assert ended.epochs_done == finished.epochs_done and ended.test == finished.test


def test_a_torn_last_line_of_events_does_not_swallow_the_next_record(out):
    run, _ = train(out, "iris", epochs=1)
    events = run.run_dir / rundir.EVENTS
    with open(events, "a") as handle:
        handle.write('{"event": "batch", "epoch": 2, "lo')  # what a kill in mid-write leaves
    resumed = Run.resume(run.run_dir, epochs=2).start()
    assert resumed.wait().name == "run_finished"
    assert runs.summary(run.run_dir)["status"] == "finished"
    records = list(rundir.read_events(run.run_dir))
    assert [r["event"] for r in records].count("run_started") == 2


# --- a process that died is a failed run everywhere --------------------------------------


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    """A run directory whose training process was killed with SIGKILL after its second epoch."""
    cwd = tmp_path_factory.mktemp("killed")
    run_dir = cwd / "checkpoints" / "dead"
    process = launch(cwd, "--task", "digits", "--epochs", "2000", "--name", "dead", *EVERY_EPOCH)
    try:
        assert wait_until(lambda: recorded(run_dir, "checkpoint", kind="last", epoch=2), process)
    finally:
        kill_9(process)
    return run_dir


def test_inspect_and_the_browser_list_show_a_killed_run_as_failed(cli, killed):
    info = json.loads(cli("inspect", killed, "--json").out)
    assert info["status"] == "failed" and info["epoch"] >= 2
    assert "ended without recording why" in info["message"]
    shown = cli("inspect", killed)
    assert "status failed" in shown.out and "ended without recording why" in shown.out
    listed = runs.list_runs(killed.parent)
    assert [(run["name"], run["status"]) for run in listed] == [("dead", "failed")]


def test_watch_ends_a_killed_run_as_failed(killed):
    from tui.sources import WatchedRun

    source = WatchedRun(killed)
    assert source.poll()[0].name == "run_started"
    ended = source.poll()
    assert len(ended) == 1 and isinstance(ended[0], RunFailed) and "killed?" in ended[0].message


def test_watch_dashboard_shows_a_killed_run_as_failed(killed):
    import asyncio

    from conftest import text, until
    from textual.widgets import Static

    from tui.app import TorchdeckApp
    from tui.dashboard import DashboardScreen

    async def scenario():
        app = TorchdeckApp(out=killed.parent, watch=killed)
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.ended is not None)
            assert app.screen.ended.name == "run_failed"
            assert "killed?" in text(app.screen.query_one("#result-text", Static))

    asyncio.run(scenario())


def test_a_run_that_died_before_recording_its_start_is_failed_once_its_lock_is_free(cli, out):
    run = Run.new(RunConfig.for_task("wine", epochs=2, out=str(out), name="early"))  # never started
    assert runs.status(run.run_dir) == "running"  # it may be about to start: it holds the run's lock
    run.lock.release()  # what its process dying does
    assert runs.status(run.run_dir) == "failed" and runs.summary(run.run_dir)["status"] == "failed"
    refused = cli("train", "--resume", run.run_dir)
    assert refused.code == 2 and "holds no checkpoint yet: the run failed before its first epoch ended" in refused.err
    assert f"start it again with: torchdeck train --config {run.run_dir / rundir.CONFIG}" in refused.err


def test_a_killed_run_resumes(killed, tmp_path):
    copy = Path(shutil.copytree(killed, tmp_path / "dead"))
    epoch = checkpoint.load(copy / rundir.LAST)["epoch"]
    resumed = Run.resume(copy, epochs=epoch + 1).start()
    assert resumed.wait().name == "run_finished"
    assert runs.status(copy) == "finished"


# --- signals -------------------------------------------------------------------------------


def test_sighup_stops_saves_and_records_why(cli, tmp_path):
    process = launch(tmp_path, "--task", "digits", "--epochs", "2000", "--name", "hup")
    run_dir = tmp_path / "checkpoints" / "hup"
    assert wait_until(lambda: recorded(run_dir, "epoch"), process)
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 129, err
    assert "stopped (received SIGHUP)" in out.splitlines()[-1]
    assert out.splitlines()[-1].endswith("resume with: torchdeck train --resume checkpoints/hup")
    last = json.loads((run_dir / rundir.EVENTS).read_text().splitlines()[-1])
    assert last["event"] == "run_stopped" and last["reason"] == "received SIGHUP"
    assert checkpoint.load(run_dir / rundir.LAST)["epoch"] >= 1
    shown = cli("inspect", run_dir)
    assert "status stopped (received SIGHUP)" in shown.out
    summary = runs.summary(run_dir)
    assert (summary["status"], summary["reason"]) == ("stopped", "received SIGHUP")
    from tui.rundetails import heading

    assert "stopped (received SIGHUP)" in heading(summary).plain


def test_a_second_signal_quits_at_once_and_the_last_checkpoint_survives(tmp_path):
    """Ctrl+C while the disk is slow to take the checkpoint; Ctrl+C again a second later."""
    process = launch(tmp_path, "--task", "iris", "--epochs", "50", "--name", "slow", *EVERY_EPOCH, stall_at=3)
    run_dir = tmp_path / "checkpoints" / "slow"
    assert wait_until(lambda: (tmp_path / "stalled").exists(), process)
    process.send_signal(signal.SIGINT)
    time.sleep(1.2)  # a repeat within a second is taken for the same Ctrl+C
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "torchdeck: quitting without waiting; resume with: torchdeck train --resume checkpoints/slow" in err
    saved = checkpoint.load(run_dir / rundir.LAST)  # saves 1 and 2: best.pt and last.pt of epoch 1
    assert saved["epoch"] == 1
    assert Run.resume(run_dir, epochs=2).start().wait().name == "run_finished"


def test_a_second_signal_before_any_checkpoint_offers_no_resume(tmp_path):
    process = launch(tmp_path, "--task", "iris", "--epochs", "50", "--name", "none", *EVERY_EPOCH, stall_at=1)
    assert wait_until(lambda: (tmp_path / "stalled").exists(), process)  # the first write: nothing on disk
    process.send_signal(signal.SIGINT)
    time.sleep(1.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert err.strip().splitlines()[-1] == ("torchdeck: quitting without waiting; no checkpoint was written yet, "
                                            "so there is nothing to resume")


def test_a_stop_during_the_final_test_evaluation_keeps_every_epoch_and_resuming_tests(out):
    """A run shorter than save_every has written nothing when its test evaluation begins."""
    run = Run.new(RunConfig.for_task("iris", epochs=2, out=str(out), save_every=3600))
    run.events.subscribe(lambda e: e.name == "epoch" and e.epoch == 2 and run.control.stop("received SIGINT"))
    stopped = run.start().wait()
    assert stopped.name == "run_stopped" and stopped.reason == "received SIGINT"
    assert stopped.resume_command == rundir.resume_command(run.run_dir)
    last = checkpoint.load(run.run_dir / rundir.LAST)
    assert last["epoch"] == 2 and "test" not in last and (run.run_dir / rundir.BEST).exists()
    finished = Run.resume(run.run_dir).start().wait()
    assert finished.name == "run_finished" and finished.epochs_done == 2
    assert "test" in checkpoint.load(run.run_dir / rundir.LAST)


LONG = ["--task", "digits", "--epochs", "100"]  # a few seconds: signals and closed output land mid-run


@pytest.mark.skipif(shutil.which("nohup") is None, reason="needs nohup")
def test_under_nohup_a_hang_up_is_ignored_and_the_run_trains_to_its_end(tmp_path):
    process = launch(tmp_path, *LONG, "--name", "bg", under=("nohup",))
    run_dir = tmp_path / "checkpoints" / "bg"
    assert wait_until(lambda: recorded(run_dir, "epoch"), process)
    process.send_signal(signal.SIGHUP)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert recorded(run_dir, "run_finished") and not recorded(run_dir, "run_stopped")
    assert len((run_dir / rundir.METRICS).read_text().splitlines()) == 1 + 100


def test_output_to_a_pipe_closed_early_is_dropped_and_the_run_trains_to_its_end(tmp_path):
    """`torchdeck train | head -2`"""
    process = launch(tmp_path, *LONG, "--name", "piped")
    run_dir = tmp_path / "checkpoints" / "piped"
    head = [process.stdout.readline() for _ in range(2)]
    process.stdout.close()
    assert head[0].startswith("start ") and head[1].startswith("epoch 1/100")
    err = process.stderr.read()
    assert process.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert runs.status(run_dir) == "finished"
    assert len((run_dir / rundir.METRICS).read_text().splitlines()) == 1 + 100


def drain(fd: int) -> bool:
    """Read whatever waits on ``fd``, so that the writer never blocks; False."""
    while select.select([fd], [], [], 0)[0]:
        os.read(fd, 1 << 16)
    return False


def test_a_terminal_that_hangs_up_stops_saves_and_exits_129_without_a_traceback(tmp_path):
    terminal, its_end = pty.openpty()
    process = launch(tmp_path, "--task", "digits", "--epochs", "2000", "--name", "ssh", stdout=its_end)
    os.close(its_end)
    run_dir = tmp_path / "checkpoints" / "ssh"
    try:
        assert wait_until(lambda: drain(terminal) or recorded(run_dir, "epoch", epoch=2), process)
    finally:
        os.close(terminal)  # the terminal is gone: writes to it now fail with EIO
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 129, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    last = json.loads((run_dir / rundir.EVENTS).read_text().splitlines()[-1])
    assert last["event"] == "run_stopped" and last["reason"] == "received SIGHUP"
    assert checkpoint.load(run_dir / rundir.LAST)["epoch"] >= 2


# --- run directories ------------------------------------------------------------------------


def _create(out: str) -> str:
    return str(rundir.create(out, "same"))


def test_runs_created_at_once_with_the_same_name_get_different_directories(tmp_path):
    out = str(tmp_path / "checkpoints")
    barrier = threading.Barrier(8)

    def racing(_):
        barrier.wait()
        return _create(out)

    with ThreadPoolExecutor(8) as threads:
        made = list(threads.map(racing, range(8)))
    with ProcessPoolExecutor(4) as processes:
        made += list(processes.map(_create, [out] * 8))
    assert len(set(made)) == 16
    assert sorted(Path(path).name for path in made) == sorted(["same"] + [f"same-{n}" for n in range(2, 17)])


# --- a full disk, a read-only folder ---------------------------------------------------------


def snapshots(run: Run) -> dict[str, bytes]:
    """The bytes of each checkpoint as last written, kept up to date as the run saves them."""
    saved: dict[str, bytes] = {}
    run.events.subscribe(lambda e: isinstance(e, CheckpointSaved) and saved.update({e.kind: Path(e.path).read_bytes()}))
    return saved


def fill_disk_after(count: int, error: OSError):
    """A torch.save that works ``count`` times, then raises ``error`` after writing a little."""
    real_save, calls = torch.save, []

    def save(payload, handle, *args, **kwargs):
        calls.append(1)
        if len(calls) > count:
            handle.write(b"PK\x03\x04")
            raise error
        return real_save(payload, handle, *args, **kwargs)

    return save


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
])
def test_a_failed_checkpoint_write_fails_the_run_clearly_and_keeps_the_previous_one(out, monkeypatch, error, reason):
    run = Run.new(RunConfig.for_task("iris", epochs=6, out=str(out), name="full", **SAVES))
    saved = snapshots(run)

    def full_after_epoch_2(event):
        if isinstance(event, CheckpointSaved) and event.kind == "last" and event.epoch == 2:
            monkeypatch.setattr(torch, "save", fill_disk_after(0, error))

    run.events.subscribe(full_after_epoch_2)
    failed = run.start().wait()
    monkeypatch.undo()
    assert isinstance(failed, RunFailed) and not failed.details  # an explained failure, no traceback
    assert failed.message.startswith("cannot write ")
    assert f".pt in {run.run_dir}: {reason}; the previous " in failed.message
    for kind in ("last", "best"):
        assert (run.run_dir / f"{kind}.pt").read_bytes() == saved[kind]
    assert checkpoint.load(run.run_dir / rundir.LAST)["epoch"] == 2
    assert not list(run.run_dir.glob(".*.tmp"))
    assert runs.summary(run.run_dir)["status"] == "failed"


def test_a_full_disk_on_the_command_line_is_one_line_and_exit_1(cli, monkeypatch):
    monkeypatch.setattr(torch, "save", fill_disk_after(0, OSError(errno.ENOSPC, "No space left on device")))
    result = cli("train", "--epochs", "3", "--name", "full")
    assert result.code == 1
    assert result.out.splitlines()[-1].startswith(
        f"end failed: cannot write best.pt in {Path('checkpoints/full')}: No space left on device")
    assert "Traceback" not in result.out + result.err


def fill_disk_under(path: Path) -> None:
    """Make every later write through this process's open descriptors of ``path`` fail as on a
    full disk: they now lead to /dev/full, which refuses every write with ENOSPC."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
                if os.readlink(f"/proc/self/fd/{fd}") == str(path.resolve()):
                    os.dup2(full, int(fd))
    finally:
        os.close(full)


@pytest.mark.skipif(not (Path("/dev/full").exists() and Path("/proc/self/fd").is_dir()),
                    reason="needs Linux's /dev/full and /proc")
def test_a_full_disk_while_recording_events_fails_the_run_clearly(out, monkeypatch):
    run = Run.new(RunConfig.for_task("iris", epochs=5, out=str(out), **SAVES), batch_events_every=0.0)
    run.events.subscribe(lambda e: isinstance(e, CheckpointSaved) and e.kind == "last" and e.epoch == 1
                         and fill_disk_under(run.run_dir / rundir.EVENTS))  # the next event cannot be recorded
    uncaught = []
    monkeypatch.setattr(threading, "excepthook", uncaught.append)
    failed = run.start().wait()
    assert isinstance(failed, RunFailed) and not uncaught
    assert failed.message.startswith(f"cannot write to the run directory {run.run_dir}: No space left on device")
    assert checkpoint.load(run.run_dir / rundir.LAST)["epoch"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_a_read_only_output_folder(cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        refused = cli("train", "--epochs", "1", "--out", "locked", "--name", "r")
        assert refused.code == 2 and refused.err.count("\n") == 1
        assert refused.err.startswith(f"torchdeck: error: cannot create the run directory {Path('locked/r')}: "
                                      f"Permission denied")
    finally:
        locked.chmod(0o755)
    run, _ = train(tmp_path / "out", "iris", epochs=1, name="r")
    before = (run.run_dir / rundir.LAST).read_bytes()
    run.run_dir.chmod(0o555)
    try:
        failed = Run.resume(run.run_dir, epochs=2)
    except Exception as exc:  # resuming needs to rewrite config.toml in the folder first
        assert f"cannot write config.toml in {run.run_dir}: Permission denied" in str(exc)
    else:
        raise AssertionError(f"resumed into a read-only folder: {failed}")
    finally:
        run.run_dir.chmod(0o755)
    assert (run.run_dir / rundir.LAST).read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders anyway")
def test_a_run_folder_made_read_only_mid_run(out):
    run = Run.new(RunConfig.for_task("iris", epochs=5, out=str(out), name="ro", **SAVES))
    saved = snapshots(run)
    run.events.subscribe(lambda e: e.name == "epoch" and e.epoch == 2 and run.run_dir.chmod(0o555))
    try:
        failed = run.start().wait()
    finally:
        run.run_dir.chmod(0o755)
    assert isinstance(failed, RunFailed) and not failed.details
    assert f"in {run.run_dir}: Permission denied; the previous best.pt is intact" in failed.message
    assert (run.run_dir / rundir.LAST).read_bytes() == saved["last"]
    assert checkpoint.load(run.run_dir / rundir.LAST)["epoch"] == 1


# --- NaN and infinite losses -----------------------------------------------------------------


def poison(run: Run, value: float, epoch: int, batch: int, batches: int) -> None:
    """Make the training loss ``value`` at ``epoch``, ``batch`` (both from 1) of ``run``."""
    real, step = run.parts.loss_fn, (epoch - 1) * batches + batch - 1

    def loss(outputs, targets):
        result = real(outputs, targets)
        return result * value if run.parts.model.training and run.state.step == step else result

    run.parts.loss_fn = loss


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_loss_that_becomes_nan_or_inf_is_named_and_the_good_checkpoints_stay(out, value):
    run = Run.new(RunConfig.for_task("iris", epochs=6, out=str(out), **SAVES))  # 7 batches an epoch
    poison(run, value, epoch=4, batch=5, batches=7)
    saved = snapshots(run)
    failed = run.start().wait()
    assert isinstance(failed, RunFailed)
    assert failed.message.startswith(f"the loss became {value} at epoch 4, batch 5 (learning rate 0.01): "
                                     "training diverged; try a lower --lr (last.pt and best.pt hold epoch 3)")
    for kind in ("last", "best"):
        assert (run.run_dir / f"{kind}.pt").read_bytes() == saved[kind]
    last = checkpoint.load(run.run_dir / rundir.LAST)
    assert last["epoch"] == 3 and all(torch.isfinite(t).all() for t in last["model"].values())
    assert runs.summary(run.run_dir)["status"] == "failed"


def test_a_validation_loss_that_becomes_nan_is_named(out):
    run = Run.new(RunConfig.for_task("iris", epochs=4, out=str(out), **SAVES))
    real = run.parts.loss_fn
    validation = run.data.splits["val"].y
    run.parts.loss_fn = lambda outputs, targets: real(outputs, targets) * (
        float("nan") if targets is validation and run.state.epoch == 2 else 1)
    failed = run.start().wait()
    assert isinstance(failed, RunFailed)
    assert failed.message.startswith("the validation loss became nan at epoch 3 (learning rate 0.01): "
                                     "training diverged; try a lower --lr")
    assert checkpoint.load(run.run_dir / rundir.LAST)["epoch"] == 2
