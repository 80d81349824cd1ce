"""Splits and batching: the fixed-seed split of a data set, tensor splits cut by index, the
contiguous shard a process of a job evaluates, and a model's eval-mode outputs over a split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from engine.data.holdout import train_test_split
from engine.data.meta import TaskMeta, TaskSpec
from engine.errors import DataError

# The split never depends on the run's seed: runs with different seeds are judged on the same
# validation and test samples.
SPLIT_SEED = 42


def shard(total: int, rank: int, size: int) -> slice:
    """The contiguous part of ``total`` items that process ``rank`` of ``size`` evaluates."""
    return slice(total * rank // size, total * (rank + 1) // size)


EVAL_CHUNK = 1024  # samples per forward pass: bounded memory for CNNs on whole splits


@torch.no_grad()
def outputs_of(model: torch.nn.Module, x: torch.Tensor | Iterable[torch.Tensor]) -> torch.Tensor:
    """The model's outputs in eval mode for every sample of ``x``: a tensor (cut into chunks here)
    or an iterable of input batches (a DataLoader's)."""
    chunks = (x[i:i + EVAL_CHUNK] for i in range(0, len(x), EVAL_CHUNK)) if torch.is_tensor(x) else x
    was_training = model.training
    model.eval()
    try:
        outputs = [model(chunk) for chunk in chunks]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)  # a small split: no copy
    finally:
        model.train(was_training)


Part = tuple[int, int] | None  # (rank, processes) of a job of several processes; None: all of it


def batch_rows(order: torch.Tensor, batch_size: int, index: int, part: Part = None) -> torch.Tensor:
    """The rows of batch ``index`` of ``order``; with ``part``, every processes-th of them from
    the rank's on: the processes of a job share each global batch."""
    rows = order[index * batch_size:(index + 1) * batch_size]
    return rows[part[0]::part[1]] if part else rows


@dataclass
class Split:
    """A split held as tensors on the device: batches are cut by index, with no DataLoader."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, order: torch.Tensor, batch_size: int, first: int, count: int, part: Part = None):
        """(inputs, targets) of batches ``first`` to ``count - 1`` of this epoch's ``order``;
        with ``part`` (rank, processes), this process's slice of each batch."""
        for index in range(first, count):
            rows = batch_rows(order, batch_size, index, part)
            yield self.x[rows], self.y[rows]

    def outputs(self, model: torch.nn.Module, part: Part = None) -> torch.Tensor:
        """The model's outputs for every sample (with ``part``: this process's contiguous share),
        in order, in eval mode."""
        return outputs_of(model, self.x[shard(len(self), *part)] if part else self.x)

    def close(self) -> None:
        """Nothing to stop: a tensor split has no worker processes (see LoaderSplit.close)."""


@dataclass
class TaskData:
    meta: TaskMeta
    splits: dict[str, Split]
    notes: list[str] = field(default_factory=list)  # what loading did to the data (rows dropped): a run warns

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}

    def close(self) -> None:
        """Stop the splits' DataLoader workers (a run does when it ends)."""
        for split in self.splits.values():
            split.close()


def split_rows(spec: TaskSpec, labels: np.ndarray, config, held_out: tuple[str, ...] = ("val", "test")) -> dict:
    """Row indices of "train" and each ``held_out`` split: a fixed seed, stratified by class.

    ``held_out`` names the splits the data does not bring itself; each is ``val_fraction`` or
    ``test_fraction`` of all these rows.
    """
    classify = spec.kind != "regression"
    least = len(np.unique(labels)) if classify else 2  # every class in every split; R² needs 2 samples
    shares = {name: getattr(config, f"{name}_fraction") for name in held_out}
    for name, share in shares.items():
        if round(share * len(labels)) < least:
            raise DataError(
                f"{name}_fraction: {share} of {len(labels)} samples is fewer than the {least} that task "
                f"'{spec.name}' needs in that split; use a larger fraction", option=f"{name}_fraction"
            )
    rows, left, splits = np.arange(len(labels)), 1.0, {}
    for name, share in sorted(shares.items(), key=lambda item: item[0] != "test"):  # test first, as ever
        rows, splits[name] = train_test_split(rows, test_size=share / left, random_state=SPLIT_SEED,
                                              stratify=labels[rows] if classify else None)
        left -= share
    return {"train": rows, **splits}


