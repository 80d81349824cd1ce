"""`torchdeck sweep`: its lines when piped, the best trial's command, a kill -9 and --resume, and
the one line without Optuna."""

from __future__ import annotations

import contextlib
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import runs
from engine.use.sweep import GRACE, STORAGE, STUDY

optuna = pytest.importorskip("optuna")

SWEEP = ["sweep", "--param", "lr=1e-3..1e-1:log", "--task", "iris"]


def test_piped_output_is_a_line_per_trial_then_the_best_command(cli, tmp_path):
    result = cli(*SWEEP, "--trials", "3", "--epochs", "3", "--out", "sweeps", "--name", "s")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    trials = [line for line in lines if line.startswith("trial ")]
    assert len(trials) == 3 and all("complete" in line and "sweeps/s/trial-000" in line for line in trials)
    best, command = lines[-2], lines[-1].strip()
    assert best.startswith("best: trial ")
    words = shlex.split(command)
    assert words[:2] == ["torchdeck", "train"] and "--lr" in words and "--name" not in words
    number = int(best.split()[2])
    trial = runs.summary(tmp_path / "sweeps" / "s" / f"trial-{number:04d}")
    again = cli(*words[1:], "--name", "again")  # the printed command trains the best trial again
    assert again.code == 0, again.err
    assert runs.summary(tmp_path / "sweeps" / "again")["best"]["value"] == pytest.approx(trial["best"]["value"])


def test_json_lines(cli):
    import json

    result = cli(*SWEEP, "--trials", "2", "--epochs", "2", "--json")
    records = [json.loads(line) for line in result.out.splitlines()]
    assert [r.get("number") for r in records[:2]] == [0, 1] and records[-1]["command"].startswith("torchdeck train")


def beating(folder, number: int) -> bool:
    """Whether trial ``number`` has recorded a heartbeat in the study. A trial killed before its
    first one is never found stale by Optuna: it stays RUNNING and its options are not retried
    (the sweep still finishes its trials)."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(folder / STORAGE, timeout=5)) as db:
        try:
            found = db.execute("SELECT 1 FROM trial_heartbeats h JOIN trials t ON t.trial_id = h.trial_id "
                               "WHERE t.number = ?", (number,)).fetchone()
        except sqlite3.OperationalError:  # the tables are being made
            return False
    return found is not None


def test_a_sweep_killed_with_kill_9_resumes_to_its_trials(cli, tmp_path):
    folder = tmp_path / "sweeps" / "k"
    process = subprocess.Popen([sys.executable, "-m", "cli", *SWEEP, "--trials", "4", "--epochs", "80",
                                "--out", "sweeps", "--name", "k"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ((folder / "trial-0002" / "events.jsonl").exists() and beating(folder, 2)):
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.01)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -9
    time.sleep(GRACE + 0.5)  # the dead trial's heartbeat is stale now: the resume retries it
    resumed = cli("sweep", "--resume", folder)  # the kill is the real process's part; resume in this one
    assert resumed.code == 0, resumed.err
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / STORAGE}")
    states = optuna.trial.TrialState
    numbers = [trial.number for trial in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len([t for t in study.trials if t.state in (states.COMPLETE, states.PRUNED)]) == 4
    killed = study.trials[2]
    assert killed.state == states.FAIL
    retry = [t for t in study.trials if t.system_attrs.get("failed_trial") == 2]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state != states.FAIL
    assert f"trial {retry[0].number:>4}" in resumed.out


def test_a_signal_stops_the_trials_and_prints_the_resume_command(tmp_path):
    folder = tmp_path / "sweeps" / "t"
    process = subprocess.Popen([sys.executable, "-m", "cli", *SWEEP, "--trials", "3", "--epochs", "2000",
                                "--save-every", "0", "--out", "sweeps", "--name", "t"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (folder / "trial-0000" / "last.pt").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert "torchdeck sweep --resume sweeps/t\n" in err
    stopped = runs.summary(folder / "trial-0000")
    assert stopped["status"] == "stopped" and "SIGTERM" in stopped["reason"]
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{folder / STORAGE}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]


def test_resume_takes_no_new_options(cli, tmp_path):
    assert cli(*SWEEP, "--trials", "1", "--epochs", "1", "--out", ".", "--name", "s").code == 0
    result = cli("sweep", "--resume", "s", "--lr", "0.1")
    assert result.code == 2 and "only --trials, --jobs and --storage" in result.err
    assert cli("sweep", "--resume", "s", "--trials", "2").code == 0
    assert (tmp_path / "s" / "trial-0001").is_dir()
    missing = cli("sweep", "--resume", "nowhere")
    assert missing.code == 2 and "not a sweep folder" in missing.err


def test_without_optuna_one_line_names_the_extra(cli, monkeypatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "optuna", None)
    result = cli(*SWEEP, "--trials", "2")
    assert result.code == 2 and result.err.count("\n") == 1
    assert "pip install 'torchdeck[sweep]'" in result.err
    assert not (tmp_path / "checkpoints").exists()
