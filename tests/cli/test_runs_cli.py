"""``torchdeck runs`` and ``torchdeck compare``: real tiny runs, and a folder of 200 run
directories made from one real run's files (finished, stopped, failed, killed and running ones)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import train

from engine.store import rundir
from engine.store.lock import RunLock

HOSTILE = "\x1b[2J[bold]run[red]\u202e"


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> list[Path]:
    """Three finished iris runs of 3 epochs with different learning rates."""
    out = tmp_path_factory.mktemp("runs")
    return [train(out, epochs=3, lr=lr, name=f"lr-{lr}")[0].run_dir for lr in (0.001, 0.01, 0.05)]


def _end(events: list[str], record: dict) -> list[str]:
    """The events with their run_finished line replaced by ``record`` (no line: killed)."""
    return [*events[:-1], *([json.dumps(record)] if record else [])]


@pytest.fixture
def folder(three, tmp_path) -> dict:
    """200 run directories copied from a real run, each a status by its number; {status: count}."""
    config = (three[0] / rundir.CONFIG).read_text()
    events = (three[0] / rundir.EVENTS).read_text().splitlines()
    assert json.loads(events[-1])["event"] == "run_finished"
    ends = {
        "stopped": {"event": "run_stopped", "time": 1.0, "run_dir": "x", "reason": "ctrl+c", "epoch": 2,
                    "batch": 0, "checkpoint": None, "resume_command": "torchdeck train --resume x"},
        "failed": {"event": "run_failed", "time": 1.0, "message": "diverged at epoch 2"},
        "killed": None,  # no end recorded and started on this host: its process died
        "running": None,  # its lock held, below
    }
    counts = {"finished": 0, "stopped": 0, "failed": 0, "running": 0}
    base = tmp_path / "many"
    for number in range(200):
        kind = ("stopped", "failed", "killed", "running")[number] if number < 4 else "finished"
        run_dir = base / f"run-{number:03d}"
        run_dir.mkdir(parents=True)
        task = "wine" if number % 10 == 9 else "iris"
        (run_dir / rundir.CONFIG).write_text(config.replace('task = "iris"', f'task = "{task}"'))
        lines = events if kind == "finished" else _end(events, ends[kind])
        (run_dir / rundir.EVENTS).write_text("\n".join(lines) + "\n")
        counts["failed" if kind == "killed" else kind] += 1
    (base / "not-a-run").mkdir()
    (base / "stray.txt").write_text("hello")
    with RunLock(base / "run-003"):
        yield {"path": base, "counts": counts}


def test_runs_json_gives_every_status_and_the_count(cli, folder):
    result = cli("runs", folder["path"], "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert len(found) == 200
    statuses = {}
    for run in found:
        statuses[run["status"]] = statuses.get(run["status"], 0) + 1
    assert statuses == folder["counts"] == {"finished": 196, "stopped": 1, "failed": 2, "running": 1}
    by_name = {run["name"]: run for run in found}
    assert by_name["run-000"]["reason"] == "ctrl+c"
    assert by_name["run-001"]["message"] == "diverged at epoch 2"
    assert by_name["run-010"]["test"]["accuracy"] >= 0 and by_name["run-010"]["epochs_done"] == 3


def test_filters_by_task_and_status(cli, folder):
    wine = json.loads(cli("runs", folder["path"], "--json", "--task", "wine").out)
    assert len(wine) == 20 and {run["task"] for run in wine} == {"wine"}
    failed = json.loads(cli("runs", folder["path"], "--json", "--status", "failed").out)
    assert sorted(run["name"] for run in failed) == ["run-001", "run-002"]
    assert cli("runs", folder["path"], "--status", "lost").code == 2


def test_sorts_by_best_name_and_date(cli, three):
    out = three[0].parent
    best = [run["best"]["value"] for run in json.loads(cli("runs", out, "--json", "--sort", "best").out)]
    assert best == sorted(best, reverse=True)
    names = [run["name"] for run in json.loads(cli("runs", out, "--json", "--sort", "name").out)]
    assert names == sorted(names)
    dates = [run["started"] for run in json.loads(cli("runs", out, "--json").out)]
    assert dates == sorted(dates, reverse=True)


def test_the_table_names_every_run_and_its_numbers(cli, three):
    result = cli("runs", three[0].parent)
    assert result.code == 0
    for run_dir in three:
        assert run_dir.name in result.out
    assert "finished" in result.out and "3/3" in result.out and "accuracy" in result.out


def test_a_missing_folder_is_one_line_and_exit_2(cli, tmp_path):
    result = cli("runs", tmp_path / "nowhere")
    assert result.code == 2 and result.err.count("\n") == 1 and "nowhere" in result.err


def test_hostile_run_names_are_shown_as_text(cli, three, tmp_path):
    out = tmp_path / "hostile"
    copy = shutil.copytree(three[0], out / HOSTILE)
    for args in (("runs", out), ("compare", copy, three[1])):
        result = cli(*args)
        assert result.code == 0, result.err
        assert "\x1b" not in result.out and "[bold]run[red]" in result.out


def test_compare_lists_the_differing_option_best_first(cli, three):
    result = cli("compare", *three, "--json")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["differing"] == ["lr"]
    values = [run["best"]["value"] for run in found["runs"]]
    assert values == sorted(values, reverse=True)
    table = cli("compare", *three)
    assert "lr" in table.out and "best accuracy" in table.out and "test accuracy" in table.out
    assert "validation loss" not in table.out  # the chart is for a terminal only


def test_compare_needs_two_runs_and_refuses_what_is_no_run(cli, three, tmp_path):
    assert cli("compare", three[0]).code == 2
    result = cli("compare", three[0], tmp_path)
    assert result.code == 2 and "not a torchdeck run directory" in result.err and result.err.count("\n") == 1


def test_compare_draws_the_validation_loss_on_a_terminal(three, capsys, monkeypatch):
    from cli import show
    from engine.use.compare import compare

    show.loss_chart(compare(three)["runs"])
    out = capsys.readouterr().out
    assert "validation loss" in out and "epoch" in out
    assert all(run_dir.name in out for run_dir in three)
