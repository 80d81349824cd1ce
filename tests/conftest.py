"""Shared helpers: tiny real runs in a temporary folder and an in-process CLI runner."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.config import RunConfig
from engine.run import Run


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """The output folder that receives run directories in a test."""
    return tmp_path / "checkpoints"


def train(out: Path, task: str = "iris", **options):
    """Run a task's preset (with ``options``) to the end; (run, events)."""
    run = Run.new(RunConfig.for_task(task, out=str(out), **options)).start()
    events = list(run.events)
    run.wait()
    return run, events


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run ``torchdeck ARGS`` in this process, from tmp_path; a Result with exit code and output."""
    from engine.cli.main import main

    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["torchdeck", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke
