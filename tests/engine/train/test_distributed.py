"""Data-parallel jobs through torchrun: real gloo processes on the CPU, started by the real CLI.

Each job costs a few seconds of process start-up (a launcher and its workers each import torch),
so the tests share what they can: one job compared with one process, one job stopped by Ctrl+C
and resumed both ways, one job whose rank 1 is killed, one two-machine job on localhost.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from conftest import shape_images, train

from cli.launch import children_of, worker_args
from engine.config import RunConfig
from engine.store import runs
from engine.train.distributed import World
from engine.train.run import Run
from engine.use.evaluate import evaluate
from engine.use.saved import load

TORCHDECK = str(Path(sys.executable).with_name("torchdeck"))
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID", "OMP_NUM_THREADS")
ENV = {**{k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS},
       "TORCHDECK_DIST_TIMEOUT": "30", "PYTHONUNBUFFERED": "1"}
# Slow enough to be stopped or killed in the middle (about 0.2 s an epoch in two processes).
LONG = ("--task", "digits", "--epochs", "40", "--batch-size", "16", "--dropout", "0", "--scheduler", "none")


class Job:
    """A command running in the background, its JSON events read as they come."""

    def __init__(self, *command: str, cwd: Path):
        self.proc = subprocess.Popen(list(command), cwd=cwd, env=ENV, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        self.err_reader = threading.Thread(target=self._read, args=(self.proc.stderr, self.err.append), daemon=True)
        self.err_reader.start()

    @staticmethod
    def _read(stream, put) -> None:
        for line in stream:
            put(line)
        put("")  # the end

    def wait_for(self, name: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if not line:
                break
            self.events.append(json.loads(line))
            if self.events[-1]["event"] == name:
                return self.events[-1]
        raise AssertionError(f"no {name} event; stderr: {''.join(self.err)}")

    def finish(self, timeout: float = 90) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        while line := self.lines.get(timeout=5):
            self.events.append(json.loads(line))
        self.err_reader.join(5)
        return code

    def kill(self) -> None:
        for pid in children_of(self.proc.pid):
            os.kill(pid, signal.SIGKILL)
        self.proc.kill()

    @property
    def stderr(self) -> str:
        return "".join(self.err)


@pytest.fixture
def jobs(tmp_path):
    started: list[Job] = []

    def start(*args: str, command: tuple[str, ...] = (TORCHDECK, "train")) -> Job:
        started.append(Job(*command, *args, "--json", cwd=tmp_path))
        return started[-1]

    yield start
    for job in started:  # a failed test leaves no workers behind
        if job.proc.poll() is None:
            job.kill()


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float = 1e-5) -> bool:
    """The same weights up to the order of float sums (two processes add the gradients up differently)."""
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=tol, rtol=tol) for k in a)


# --- a job compared with one process ------------------------------------------------------


def test_two_processes_train_like_one_and_leave_one_run_directory(jobs, out):
    # --monitor also names one of torchrun's own options (--monitor-interval): it must reach the workers
    job = jobs("--task", "digits", "--epochs", "3", "--dropout", "0", "--monitor", "val_loss", "--nproc", "2",
               "--out", str(out), "--name", "two")
    assert job.finish() == 0, job.stderr
    assert job.stderr == ""  # the launcher and rank 1 say nothing; rank 0 prints the run
    started, finished = job.events[0], job.events[-1]
    assert started["event"] == "run_started" and started["world_size"] == 2
    assert finished["event"] == "run_finished"
    assert [p.name for p in out.iterdir()] == ["two"]
    folder = out / "two"
    recorded = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    assert recorded == job.events  # --json shows exactly what rank 0 recorded

    single, events = train(out, "digits", epochs=3, dropout=0.0, monitor="val_loss")  # the same run in one process
    alone = events[-1]
    assert finished["test"]["accuracy"] == alone.test["accuracy"] > 0.8
    assert finished["test"]["loss"] == pytest.approx(alone.test["loss"], rel=1e-5)
    epochs = [e for e in job.events if e["event"] == "epoch"]
    assert [e["samples"] for e in epochs] == [1257] * 3
    assert [e["train_loss"] for e in epochs] == pytest.approx([e.train_loss for e in events if e.name == "epoch"], rel=1e-5)

    for name in ("last.pt", "best.pt"):
        saved = weights(folder / name)
        assert not any(key.startswith("module.") for key in saved)
        assert close(saved, weights(single.run_dir / name))
    rng = torch.load(folder / "last.pt", weights_only=True)["rng"]
    assert len(rng["ranks"]) == 2 and torch.equal(rng["ranks"][0]["torch"], rng["torch"])
    loaded = load(folder)  # in this one process
    assert evaluate(loaded, "test")["metrics"]["accuracy"] == alone.test["accuracy"]


# --- stop and resume -------------------------------------------------------------------------


def test_ctrl_c_stops_the_job_and_it_resumes_in_two_processes_or_one(jobs, out):
    job = jobs(*LONG, "--nproc", "2", "--out", str(out), "--name", "stop")
    job.wait_for("epoch")
    job.proc.send_signal(signal.SIGINT)  # what Ctrl+C sends the launcher
    assert job.finish(timeout=60) == 130, job.stderr
    stopped = job.events[-1]
    assert stopped["event"] == "run_stopped" and stopped["reason"] == "received SIGINT"
    assert stopped["resume_command"].endswith("--nproc 2")
    folder = out / "stop"
    position = torch.load(folder / "last.pt", weights_only=True)["train_state"]
    epochs = position["epoch"] + 1  # finish the epoch it stopped in
    shutil.copytree(folder, out / "copy")

    again = jobs("--resume", str(folder), "--epochs", str(epochs), "--nproc", "2")
    assert again.finish() == 0, again.stderr
    assert again.events[0]["start_epoch"] == position["epoch"] and again.events[0]["world_size"] == 2
    assert again.events[-1]["event"] == "run_finished" and sorted(p.name for p in out.iterdir()) == ["copy", "stop"]

    alone = Run.resume(out / "copy", epochs=epochs).start()  # the job's checkpoint in one process
    assert alone.wait().name == "run_finished"
    straight, _ = train(out, "digits", epochs=epochs, batch_size=16, dropout=0.0, scheduler="none")
    reference = weights(straight.run_dir / "last.pt")
    assert close(weights(folder / "last.pt"), reference)
    assert close(weights(out / "copy" / "last.pt"), reference)


def test_a_stop_between_epochs_resumes_exactly(out):
    """A stop seen at the first batch of an epoch (where a job's stops often land: its sync point
    at the end of the epoch before) resumes with that epoch's permutation, not the next one's."""
    straight, _ = train(out, "iris", epochs=3)
    run = Run.new(RunConfig.for_task("iris", epochs=3, out=str(out)))
    run.events.subscribe(lambda event: event.name == "epoch" and event.epoch == 1 and run.control.stop())
    run.start()
    stopped = run.wait()
    assert stopped.name == "run_stopped" and (stopped.epoch, stopped.batch) == (2, 0)
    assert Run.resume(run.run_dir).start().wait().name == "run_finished"
    assert all(torch.equal(a, b) for a, b in zip(weights(run.run_dir / "last.pt").values(),
                                                  weights(straight.run_dir / "last.pt").values()))


# --- failures ------------------------------------------------------------------------------------


def test_a_rank_that_dies_ends_the_job_with_one_clear_line(jobs, out):
    job = jobs(*LONG, "--nproc", "2", "--out", str(out), "--name", "dies")
    rank0 = job.wait_for("run_started")["pid"]
    job.wait_for("epoch")
    (rank1,) = [pid for pid in children_of(job.proc.pid) if pid != rank0]
    killed = time.monotonic()
    os.kill(rank1, signal.SIGKILL)
    assert job.finish(timeout=60) == 1
    assert time.monotonic() - killed < 15
    lines = job.stderr.splitlines()
    assert lines == [f"torchdeck: error: rank 1 (process {rank1}) was killed by SIGKILL; the job was stopped"]
    failed = job.events[-1]
    assert failed["event"] == "run_failed" and "another process of the job failed" in failed["message"]
    assert runs.status(out / "dies") == "failed"
    assert torch.load(out / "dies" / "last.pt", weights_only=True)["epoch"] >= 1  # the last snapshot is kept


def test_bad_input_is_refused_before_any_process_starts(cli):
    result = cli("train", "--task", "digits", "--nproc", "2", "--batch-size", "1")
    assert result.code == 2
    assert result.err.startswith("torchdeck: error: batch_size: 1 is too small for 2 processes")
    assert cli("train", "--nnodes", "2").err.startswith("torchdeck: error: --nnodes: a job on several machines needs")
    result = cli("train", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "localhost:29500")
    assert result.code == 2 and "--node-rank: 2 is not allowed" in result.err


# --- several machines ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_machines_one_through_torchdeck_one_through_torchrun(jobs, out, tmp_path):
    """Machine 0 runs ``torchdeck train --nnodes 2``; machine 1 runs torchrun itself on the same
    command line: both launch the same ``torchdeck train`` workers."""
    endpoint = f"127.0.0.1:{free_port()}"
    args = ("--task", "digits", "--epochs", "2", "--dropout", "0")
    first = jobs(*args, "--nnodes", "2", "--node-rank", "0", "--rdzv-endpoint", endpoint, "--nproc", "1",
                 "--out", str(out), "--name", "nodes")
    second = jobs("--nnodes", "2", "--node-rank", "1", "--rdzv-backend", "static", "--rdzv-endpoint", endpoint,
                  "--nproc-per-node", "1", "-m", "cli", "train", *args, "--out", str(tmp_path / "elsewhere"),
                  command=(sys.executable, "-m", "torch.distributed.run"))
    assert first.finish() == 0, first.stderr
    assert second.finish() == 0, second.stderr
    assert second.events == []  # rank 1 shows nothing
    assert first.events[0]["world_size"] == 2 and first.events[-1]["event"] == "run_finished"
    assert not (tmp_path / "elsewhere").exists()  # only rank 0 writes
    single, _ = train(out, "digits", epochs=2, dropout=0.0)
    assert close(weights(out / "nodes" / "last.pt"), weights(single.run_dir / "last.pt"))


# --- the pieces --------------------------------------------------------------------------------


def image_folder(root: Path, count: int) -> Path:
    """``root/<digit>/<n>.png``: ``count`` small grayscale images in ten class folders."""
    from PIL import Image

    images, labels = shape_images(count, size=16)
    for n, (image, label) in enumerate(zip(images, labels)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / str(label) / f"{n}.png")
    return root


@pytest.mark.parametrize("task", ["digits", "image-folder"])
def test_each_rank_takes_its_slice_of_every_global_batch_and_its_share_of_evaluation(task, tmp_path):
    """The tensor fast path and the DataLoader path cut a job's batches and evaluation shards alike."""
    from engine.data.tasks import load_task

    options = dict(data_dir=str(image_folder(tmp_path / "shapes", 120)), image_size=12) if task != "digits" else {}
    split = load_task(RunConfig.for_task(task, **options), "cpu").splits["train"]
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    count = -(-len(split) // 8)
    whole = list(split.batches(order, 8, 1, count))
    ranks = [list(split.batches(order, 8, 1, count, (rank, 2))) for rank in range(2)]
    for index, (inputs, targets) in enumerate(whole):
        for rank in range(2):
            assert torch.equal(ranks[rank][index][0], inputs[rank::2])
            assert torch.equal(ranks[rank][index][1], targets[rank::2])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))
    outputs = split.outputs(model)
    # The same products in batches of another size: the matrix kernels may sum in another order,
    # so float32 outputs agree to a few units in the last place, not bit for bit.
    sharded = torch.cat([split.outputs(model, (rank, 3)) for rank in range(3)])
    torch.testing.assert_close(sharded, outputs, rtol=1e-5, atol=1e-6)


def test_launch_flags_are_left_out_of_the_workers_command():
    argv = ["train", "--nproc", "2", "--task", "iris", "--nnodes=1", "--node-rank", "0", "--rdzv-endpoint=h:1", "--json"]
    assert worker_args(argv) == ["train", "--task", "iris", "--json"]


def test_the_world_comes_from_torchruns_environment():
    assert not World.from_env({}).distributed
    assert not World.from_env({"WORLD_SIZE": "1", "RANK": "0"}).distributed
    world = World.from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (world.rank, world.size, world.local_rank, world.local_size, world.is_main) == (3, 4, 1, 2, False)
    single = World.single()  # every collective is the identity in one process
    assert single.broadcast("x") == "x" and single.gather(1) == [1]
    assert single.rows([1.0, 2.0]).tolist() == [[1.0, 2.0]]


def test_a_sync_report_travels_as_one_row_and_comes_back_with_its_names():
    from engine.train.sync import SyncReport

    report = SyncReport(stop=True, save=False, steps=12, loss_sum=3.5, bad_batch=-1, bad_value=0.0)
    (row,) = World.single().rows(report.row()).tolist()
    assert SyncReport.from_row(row) == report
