"""Shared helpers: tiny real runs in a temporary folder and an in-process CLI runner."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from engine.config import RunConfig
from engine.train.run import Run


@pytest.fixture(autouse=True, scope="session")
def state_home(tmp_path_factory) -> Iterator[Path]:
    """The XDG state folder (bug reports, the record of trusted code): one temporary folder for
    the whole session, as a user's own is for all their commands, never the user's own. Set
    before any other fixture runs (a module's fixtures train runs too)."""
    home = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(home))
        yield home


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


@pytest.fixture(scope="module")
def iris(tmp_path_factory) -> Path:
    """A finished iris run directory (two epochs), trained once for the module."""
    out = tmp_path_factory.mktemp("runs")
    run = Run.new(RunConfig.for_task("iris", epochs=2, out=str(out), name="iris")).start()
    assert run.wait().name == "run_finished"
    return run.run_dir


def reading_commands(path: Path, epochs: int) -> dict[str, list]:
    """Every command that reads a checkpoint, given ``path``; the resume trains to ``epochs``."""
    return {
        "inspect": ["inspect", path],
        "evaluate": ["evaluate", path],
        "predict": ["predict", path, "--input", "5.1,3.5,1.4,0.2"],
        "resume": ["train", "--resume", path, "--epochs", str(epochs)],
    }


class Payload:
    """Unpickling this runs ``os.system`` to create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    """Run ``torchdeck ARGS`` in this process, from tmp_path; a Result with exit code and output."""
    from cli.main import main

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


HOSTILE_CLASSES = ("[/]", "\x1b]0;owned\x07[bold]b", "c\x1b[2J\u202eevil")


def hostile_csv(folder: Path) -> Path:
    """A csv task whose names are markup and terminal escapes: a target ``label`` with the
    classes HOSTILE_CLASSES and a feature ``weight [kg]`` (each class sits in its own range)."""
    lines = ["weight [kg],height,label"]
    for row in range(60):
        lines.append(f"{row % 3 * 10 + row / 60:.3f},{row % 7},{HOSTILE_CLASSES[row % 3]}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hostile.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def shape_images(count: int, size: int = 28, seed: int = 0):
    """``count`` grayscale images whose class (0-9) is where a bright square sits, plus noise.

    Easy enough to learn to high accuracy in seconds, so tests can train on real image paths.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(count, size, size), dtype=np.uint8)
    cell = size // 5
    for image, label in zip(images, labels):
        row, col = divmod(int(label), 5)
        top, left = row * (size // 2) + 2, col * cell + 1
        image[top:top + cell, left:left + cell - 1] = 255
    return images, labels.astype(np.uint8)


def write_idx(path: Path, array, gz: bool = True) -> Path:
    """An IDX file of unsigned bytes: magic 0x0000080<ndim>, big-endian int32 sizes, the bytes."""
    import gzip

    import numpy as np

    header = (0x800 + array.ndim).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx_pair(folder: Path, prefix: str, images, labels) -> None:
    """``{prefix}-images-idx3-ubyte.gz`` and ``{prefix}-labels-idx1-ubyte.gz``, as MNIST ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels)


def drive(out: Path, scenario, size=(100, 30)):
    """Run ``scenario(pilot, screen)`` against the app's opening wizard screen."""
    import asyncio

    from tui.app import TorchdeckApp

    async def main():
        app = TorchdeckApp(out=out)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            return await scenario(pilot, app.screen)

    return asyncio.run(main())


def error(screen, option: str) -> str:
    """The error the wizard shows under ``option``'s field ('' when none)."""
    row = screen.query_one(f"#{option}-row")
    return str(row.error.render()) if row.error.display else ""


# --- the TUI's screens, driven with Textual's pilot -------------------------------------------


async def until(pilot, condition, timeout: float = 60.0) -> None:
    """Let the app run until ``condition()`` holds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the app"
        await pilot.pause(0.05)


def text(widget) -> str:
    """What a Static shows, as plain text."""
    import io

    from rich.console import Console

    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


async def calm(pilot, screen) -> None:
    """Let the wizard's jobs (a data load, a parameter count) start, finish and answer."""
    await pilot.pause()
    await until(pilot, lambda: not (pilot.app.is_running and screen.later.busy))
    await pilot.pause()


async def settle(pilot) -> None:
    """Wait until every job has finished and its outcome has reached the screen (a failed job
    shows its message there too)."""
    import contextlib

    from textual.worker import WorkerFailed

    for _ in range(20):
        with contextlib.suppress(WorkerFailed):
            await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if all(worker.is_finished for worker in pilot.app.workers):
            return


async def highlight(pilot, run_dir: Path):
    """Put the browser's cursor on ``run_dir`` and wait for its details; returns the browser."""
    screen = pilot.app.screen
    table = screen.query_one("#runs")
    table.move_cursor(row=table.get_row_index(str(run_dir)))
    await settle(pilot)
    return screen
