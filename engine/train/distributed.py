"""Data-parallel training across processes: torchrun's environment, one process group, and the
few collectives the engine needs.

A :class:`World` says which process this is (``rank``) among how many (``size``).
``World.single()`` is the ordinary one-process run: every collective below is then an identity
and costs nothing, so the engine calls them unconditionally where all ranks do the same thing.
``World.from_env()`` reads what torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``); ``setup()`` joins the process group: gloo for CPU tensors (and the small
exchanges of Python objects), nccl for CUDA tensors, each process training on ``cuda:LOCAL_RANK``.

How a job stays in step (see ``engine/train/loop.py`` and ``sync.py``): every rank draws the same
per-epoch permutation and takes its slice of each global batch; DDP averages gradients; stop
requests, the time-based checkpoint decision and the running loss are exchanged at sync points
(about as often as batch events); validation and test outputs are gathered so every rank
computes the same metrics. Only rank 0 writes the run directory.

Failures: a rank that fails writes its message to torchrun's error file (``TORCHELASTIC_ERROR_FILE``)
for the launcher to report; the others notice at their next collective (a closed connection)
or, at the latest, when a collective times out after ``TORCHDECK_DIST_TIMEOUT`` seconds (120).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import timedelta
from typing import Any, Iterator

import torch

from engine.data.split import shard
from engine.errors import ConfigError, TorchdeckError
from engine.text import first_line

TIMEOUT_ENV = "TORCHDECK_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 120.0


class PeerFailed(TorchdeckError):
    """Another process of the job failed or vanished, so this one cannot go on either."""


def timeout() -> float:
    """Seconds a collective may wait for the other processes before the job fails."""
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}: {value!r} is not a number of seconds") from None


class World:
    """This process's place in the job, and the collectives that keep its processes in step."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, local_size: int = 1) -> None:
        self.rank, self.size, self.local_rank, self.local_size = rank, size, local_rank, local_size

    def __repr__(self) -> str:
        return f"World(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    @classmethod
    def single(cls) -> "World":
        return cls()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "World":
        """The job torchrun started this process in; a single world outside torchrun."""
        env = os.environ if environ is None else environ
        try:
            size = int(env.get("WORLD_SIZE") or 1)
            if size <= 1 or "RANK" not in env:
                return cls.single()
            return cls(int(env["RANK"]), size, int(env.get("LOCAL_RANK") or 0), int(env.get("LOCAL_WORLD_SIZE") or size))
        except ValueError:
            raise ConfigError("torchrun's RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers") from None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- joining ------------------------------------------------------------------------

    def resolve_device(self, name: str) -> torch.device:
        """The config's device for this process: ``cuda`` means ``cuda:LOCAL_RANK`` in a job."""
        from engine.device import resolve_device

        if not self.distributed:
            return resolve_device(name)
        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "mps":
            raise ConfigError("device: a job of several processes trains on cpu (gloo) or cuda (nccl), not mps", option="device")
        device = resolve_device(name)
        if device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"device: this machine has {torch.cuda.device_count()} CUDA device(s), too few for "
                f"{self.local_size} processes (one GPU each); use --nproc {torch.cuda.device_count()}", option="device",
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def setup(self) -> None:
        """Join the job's process group (once): gloo, and nccl for CUDA tensors where there are GPUs."""
        import torch.distributed as dist

        if not self.distributed or dist.is_initialized():
            return
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout()))
        if "OMP_NUM_THREADS" not in os.environ:  # torchrun sets it; a hand-made launch may not
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_size))

    def check(self, config) -> None:
        """A global batch must give every process at least one sample (two with batch norm)."""
        least = self.size * (2 if config.batch_norm else 1)
        if config.batch_size < least:
            per = "two samples" if config.batch_norm else "one sample"
            raise ConfigError(
                f"batch_size: {config.batch_size} is too small for {self.size} processes; the batch size is the "
                f"global batch, split among the processes, and each needs at least {per}: use at least {least}", option="batch_size",
            )

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``model`` for training: wrapped in DistributedDataParallel in a job, else itself."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)

    def close(self, clean: bool) -> None:
        """Leave the job. ``clean``: every process ended the same way, so wait for rank 0 to
        finish writing, then part; otherwise just go (a peer may be gone: no collective)."""
        import torch.distributed as dist

        if self.distributed and dist.is_initialized() and clean:
            with contextlib.suppress(Exception):
                dist.barrier()
                dist.destroy_process_group()

    # --- agreeing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Run a block that may fail on some processes only (a run directory rank 0 cannot
        create); at its end every process learns whether any failed, and all raise if one did."""
        if not self.distributed:
            yield
            return
        try:
            yield
        except Exception as exc:
            self._agree(f"{exc}" if isinstance(exc, TorchdeckError) else f"{type(exc).__name__}: {exc}")
            raise
        self._agree(None)

    def _agree(self, problem: str | None) -> None:
        problems = self.all_objects(problem)
        failed = [(rank, text) for rank, text in enumerate(problems) if text is not None]
        if failed and problem is None:
            rank, text = failed[0]
            raise PeerFailed(f"rank {rank}: {text}")

    def lost(self, exc: BaseException) -> str | None:
        """A clear message when ``exc`` is a collective that failed because another process
        failed, vanished or did not answer in time; None for any other error."""
        if not self.distributed:
            return None
        import torch.distributed as dist

        text = str(exc)
        comm = isinstance(exc, getattr(dist, "DistError", ())) or (
            isinstance(exc, RuntimeError) and any(word in text for word in ("gloo", "NCCL", "Connection", "timed out"))
        )
        if not comm:
            return None
        first = first_line(exc)
        first = first.split("] ", 1)[-1] if first.startswith("[") else first  # gloo's source location
        return (f"another process of the job failed or stopped answering, so rank {self.rank} stopped too "
                f"({first.split('. This is typically')[0]})")

    # --- collectives (identities in a single world) -----------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn a collective's failure (a peer gone, a timeout) into a clear PeerFailed."""
        try:
            yield
        except TorchdeckError:
            raise
        except Exception as exc:
            message = self.lost(exc)
            if message:
                raise PeerFailed(message) from None
            raise

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every process."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        with self._guard():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_objects(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order, on every process."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[Any] = [None] * self.size
        with self._guard():
            dist.all_gather_object(values, value)
        return values

    def gather(self, value: Any) -> list[Any] | None:
        """Every process's ``value`` in rank order on rank 0; None on the others."""
        if not self.distributed:
            return [value]
        import torch.distributed as dist

        values: list[Any] | None = [None] * self.size if self.is_main else None
        with self._guard():
            dist.gather_object(value, values, dst=0)
        return values

    def rows(self, values: list[float]) -> torch.Tensor:
        """Every process's ``values`` as the rows of one float64 tensor, in rank order (over gloo)."""
        row = torch.tensor(values, dtype=torch.float64)
        if not self.distributed:
            return row.unsqueeze(0)
        import torch.distributed as dist

        table = [torch.empty_like(row) for _ in range(self.size)]
        with self._guard():
            dist.all_gather(table, row)
        return torch.stack(table)

    def share_buffers(self, model: torch.nn.Module) -> None:
        """Give every process rank 0's buffers (batch norm's running statistics, which each rank
        updated with its own slice of the last batch), so that all evaluate rank 0's model."""
        if not self.distributed:
            return
        import torch.distributed as dist

        with self._guard():
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def concat(self, part: torch.Tensor, total: int) -> torch.Tensor:
        """The processes' contiguous parts (``shard(total, rank, size)``) put back together, on
        every process: variable lengths are padded for the exchange and trimmed after."""
        if not self.distributed:
            return part
        import torch.distributed as dist

        sizes = [len(range(total)[shard(total, rank, self.size)]) for rank in range(self.size)]
        longest = max(sizes)
        padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype, device=part.device)
        padded[:len(part)] = part
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        with self._guard():
            dist.all_gather(parts, padded)
        return torch.cat([chunk[:size] for chunk, size in zip(parts, sizes)])

    # --- reporting a failure to the launcher --------------------------------------------------

    def record_failure(self, message: str, details: str = "", peer: bool = False) -> None:
        """Write ``message`` to torchrun's error file for this process, in the format torchrun
        reads (its report shows it; ``torchdeck train --nproc`` prints it as one line)."""
        path = os.environ.get("TORCHELASTIC_ERROR_FILE")
        if not path:
            return
        stamp = str(int(time.time()))
        data = {"message": {"message": message, "extraInfo": {
            "py_callstack": f"{message}\n{details}".rstrip(), "timestamp": stamp,
            "torchdeck": json.dumps({"rank": self.rank, "peer": peer}),
        }}}
        with contextlib.suppress(OSError):
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(data, handle)


def exit_now(code: int) -> None:
    """End this process at once with ``code``: after a peer failed, the process group's own
    teardown at interpreter exit can abort (``terminate called``) instead of exiting cleanly."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
