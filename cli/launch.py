"""``torchdeck train --nproc N``: the same command, started N times by torch.distributed.run.

The launcher runs torchrun's elastic agent in this process (``torch.distributed.run.main``) with
``python -m cli train`` and the user's arguments minus the launch flags, so every worker
parses exactly what was typed. Workers inherit the terminal: rank 0 prints the run as a single
process would, the other ranks stay quiet. Torchrun's own log is silenced (``LOGLEVEL=INFO``
brings it back) and its report of a failed worker becomes one line naming the rank and its error,
read from the error file the worker left (see ``engine.train.distributed.World.record_failure``).

Exit codes follow ``torchdeck train``: 0 done, 1 a rank failed, 2 bad input, 128 + n for a stop
by signal n. Ctrl+C reaches the launcher, whose agent forwards it to every worker: they stop
together, rank 0 saves ``last.pt``. A second Ctrl+C is forwarded too, so they quit at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Iterator

from engine.errors import ConfigError, TorchdeckError
from engine.train.distributed import World, exit_now

LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint")
STOPPED = {128 + int(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}


def worker_args(argv: list[str]) -> list[str]:
    """``argv`` without the launch flags and their values (``--nproc 2`` or ``--nproc=2``)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in LAUNCH_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in LAUNCH_FLAGS)):
            kept.append(arg)
    return kept


def check(nproc: int, nnodes: int, node_rank: int, endpoint: str | None) -> None:
    if nnodes > 1 and not endpoint:
        raise ConfigError("--nnodes: a job on several machines needs --rdzv-endpoint HOST:PORT of machine 0 "
                          "(and --node-rank on each)")
    if node_rank >= nnodes:
        raise ConfigError(f"--node-rank: {node_rank} is not allowed; the machines of a job of {nnodes} are "
                          f"numbered 0 to {nnodes - 1}")
    if endpoint and (":" not in endpoint or not endpoint.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f"--rdzv-endpoint: {endpoint!r} is not HOST:PORT (such as 10.0.0.1:29500)")


def launch(nproc: int, nnodes: int, node_rank: int, endpoint: str | None, argv: list[str]) -> int:
    """Run ``torchdeck ARGV`` (a train command) as a job of ``nproc`` processes on this machine
    times ``nnodes`` machines; the exit code to end with."""
    check(nproc, nnodes, node_rank, endpoint)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    os.environ.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "60")  # time for rank 0 to save on a stop
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    if "LOGLEVEL" not in os.environ:  # torchrun's log lines, and its report, become our one line
        for name in ("torch.distributed.run", "torch.distributed.launcher", "torch.distributed.elastic"):
            quiet = logging.getLogger(name)
            quiet.addHandler(logging.NullHandler())
            quiet.propagate = False

    if nnodes == 1:
        where = ["--standalone", "--nnodes", "1"]
    else:
        where = ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--rdzv-backend", "static",
                 "--rdzv-endpoint", endpoint]
        if node_rank:
            print(f"torchdeck: machine {node_rank} of {nnodes}: joining the job at {endpoint}", file=sys.stderr)
        else:
            print(f"torchdeck: machine 0 of {nnodes}: waiting at {endpoint} for the others", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="torchdeck-job-") as logs:
        try:
            torchrun([*where, "--nproc-per-node", str(nproc), "--max-restarts", "0", "--log-dir", logs,
                      "--module", "cli", "--", *argv])  # "--": torchrun must not take --monitor for its --monitor-interval
        except ChildFailedError as exc:
            return _report(exc.failures)
        except SignalException as exc:  # a second signal while the agent waited for the workers
            _end_children(exc.sigval)
            return 128 + int(exc.sigval)
    return 0


def _report(failures: dict[int, Any]) -> int:
    """One line on the failure that ended the job (unless rank 0 already said it), and its exit code."""
    codes = [failure.exitcode for failure in failures.values()]
    if all(code in STOPPED for code in codes):  # stopped together; a rank that got no signal itself says 130
        return next((code for code in codes if code != 128 + signal.SIGINT), codes[0])
    rank, failure = min(failures.items(), key=lambda item: _cause_order(*item))
    info = _info(failure)
    if rank != 0 or info is None:
        if info is not None:
            text = f"rank {rank} failed: {info['message']}"
        elif failure.exitcode < 0:
            text = f"rank {rank} (process {failure.pid}) was killed by {failure.signal_name()}"
        else:
            text = f"rank {rank} (process {failure.pid}) exited with status {failure.exitcode} without saying why"
        print(f"torchdeck: error: {text}; the job was stopped", file=sys.stderr, flush=True)
    return 2 if failure.exitcode == 2 else failure.exitcode if failure.exitcode in STOPPED else 1


def _cause_order(rank: int, failure: Any) -> tuple:
    """Which failure ended the job: one of its own before one that only followed another's (a
    lost peer, the agent's SIGTERM), rank 0 first (it has told the user), then the earliest."""
    info = _info(failure)
    followed = (info or {}).get("peer", False) or failure.exitcode in (-signal.SIGTERM, 128 + signal.SIGTERM)
    return bool(followed), rank != 0, failure.timestamp, rank


def _info(failure: Any) -> dict[str, Any] | None:
    """What a torchdeck worker wrote into its error file: message, rank, peer; None without one."""
    message = (failure.error_file_data or {}).get("message")
    if not isinstance(message, dict):
        return None
    try:
        extra = json.loads(message.get("extraInfo", {}).get("torchdeck", ""))
    except (TypeError, ValueError):
        return None
    return {**extra, "message": message.get("message", "")}


def _end_children(signum: int) -> None:
    """Forward a second signal to the workers (they quit at once), then kill what is left."""
    children = children_of(os.getpid())
    for pid in children:
        with contextlib.suppress(OSError):
            os.killpg(pid, signum)  # torchrun starts each worker in a session of its own
    deadline = time.monotonic() + 5
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if _running(pid)]
        time.sleep(0.05)
    for pid in children:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)


def children_of(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (from Linux's /proc; none found elsewhere)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == parent:
                        found.append(int(entry))
    return found


def _running(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    return False


# --- the worker's side -----------------------------------------------------------------------


@contextlib.contextmanager
def reported(world: World, error: Callable[[str], None]) -> Iterator[None]:
    """Preparing a run in a job: bad input (the same on every rank, or agreed on by them) is
    printed by rank 0 alone and recorded by every rank for the launcher; all exit with 2."""
    try:
        yield
    except TorchdeckError as exc:
        if not world.distributed:
            raise
        world.record_failure(str(exc))
        if world.is_main:
            error(str(exc))
        exit_now(2)


class Quiet:
    """The reporter of ranks other than 0: rank 0 shows the whole job."""

    def __call__(self, event) -> None:
        pass

    def close(self) -> None:
        pass


def leave(world: World, run, code: int) -> None:
    """End a worker of a job: record a failure for the launcher, wait for rank 0 to finish
    writing when the job ended together, and exit without the process group's teardown."""
    if not world.distributed:
        return
    result = run.result
    if code not in (0, *STOPPED):
        message = getattr(result, "message", "") or "the run ended without reporting why"
        world.record_failure(message, getattr(result, "details", ""), peer=run.lost_peer)
    world.close(clean=code in (0, *STOPPED))
    exit_now(code)
