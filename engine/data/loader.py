"""Splits whose inputs are made per sample: a DataLoader that the training loop orders.

Image folders decode and augment each image as it is needed, and a user's own Dataset may draw
a fresh augmentation on every ``__getitem__``; neither can be frozen into tensors once. A
:class:`LoaderSplit` keeps the targets on the device and asks a dataset of inputs for each
batch, in the order the engine chose, through worker processes where they pay off, with pinned
memory and non-blocking copies on CUDA.
"""

from __future__ import annotations

import os
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from engine.data.split import batch_rows, outputs_of, shard
from engine.errors import DataError

WORKERS_FROM = 512  # a split this small is prepared faster in-process than through worker start-up


class EpochBatches(Sampler):
    """The batches of the current epoch, in the engine's order: set before each pass.

    One sampler for the life of the loader lets its workers persist between epochs while the
    engine keeps control of the order (and of where a resumed epoch starts).
    """

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LoaderSplit:
    """A split whose targets are on the device and whose inputs ``dataset`` (a Dataset giving
    input ``i`` as a tensor, with no target) makes as batches are needed."""

    def __init__(self, dataset: Dataset, y: torch.Tensor, device: torch.device | str, seed: int) -> None:
        self.dataset, self.y, self.device = dataset, y, torch.device(device)
        self.sampler = EpochBatches()
        workers = _workers(len(dataset), self.device)
        self.loader = DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda", generator=torch.Generator().manual_seed(seed),
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, order: torch.Tensor, batch_size: int, first: int, count: int, part=None):
        """(inputs, targets) of batches ``first`` to ``count - 1`` of this epoch's ``order``;
        with ``part`` (rank, processes), this process's slice of each batch."""
        rows = order.cpu()
        self.sampler.batches = [batch_rows(rows, batch_size, i, part).tolist() for i in range(first, count)]
        try:
            for indices, inputs in zip(self.sampler.batches, self.loader):
                yield inputs.to(self.device, non_blocking=True), self.y[torch.as_tensor(indices, device=self.y.device)]
        except DataError as exc:  # from a worker, DataLoader wraps the message in the worker's traceback
            raise DataError(_own_message(str(exc)), option=exc.option) from None

    def close(self) -> None:
        """Stop the loader's worker processes now, in this thread. Left to the garbage collector,
        a finished run's persistent workers are shut down by whichever thread collects the run,
        which then waits on them: the next run in the same process stalled. The loader
        stays usable (iterating it again starts new workers)."""
        iterator, self.loader._iterator = self.loader._iterator, None  # no public API for this
        if iterator is not None:
            iterator._shutdown_workers()

    def outputs(self, model: torch.nn.Module, part=None, batch_size: int = 256) -> torch.Tensor:
        """The model's outputs for every sample of the split (with ``part``: this process's
        contiguous share), in order, in eval mode."""
        rows = torch.arange(len(self))[shard(len(self), *part)] if part else torch.arange(len(self))
        batches = self.batches(rows, batch_size, 0, -(-len(rows) // batch_size))
        return outputs_of(model, (inputs for inputs, _ in batches))


def _workers(samples: int, device: torch.device) -> int:
    """DataLoader worker processes for a split of ``samples``.

    None for a small split (starting workers costs more than preparing its samples in process).
    A model trained on the CPU computes on the same cores the workers prepare samples on: none
    on two cores or fewer (there they slow the model down more than they speed decoding up, as
    the tutorial ConvNet on a 32-pixel folder measured), half the cores up to 4 above that. On a
    GPU, up to 4.
    """
    cores = os.cpu_count() or 1
    if samples < WORKERS_FROM or (device.type == "cpu" and cores <= 2):
        return 0
    return min(4, cores // 2 if device.type == "cpu" else cores)


def _own_message(text: str) -> str:
    """A DataError's own message, out of the traceback a DataLoader worker wraps it in."""
    prefix = f"{DataError.__module__}.{DataError.__name__}: "
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    return lines[-1][len(prefix):] if lines else text
