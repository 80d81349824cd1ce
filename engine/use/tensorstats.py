"""Statistics and a histogram of one tensor's values, read a slice at a time.

A tensor of a memory-mapped or lazily read file is walked in chunks of CHUNK elements in
float64, so a tensor of any size costs CHUNK × 8 bytes beyond what its pages hold, and the sums
of a large tensor do not lose digits as float32 sums would.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from engine.errors import CheckpointError
from engine.store.modelfiles import TensorEntry

CHUNK = 1 << 22  # elements per slice (32 MiB of float64)


def values(entry: TensorEntry) -> torch.Tensor:
    """The tensor's values, or one CheckpointError saying why they cannot be read."""
    if entry.read is None:
        raise CheckpointError(f"{entry.name}: its values cannot be read without running the file")
    tensor = entry.read()
    if tensor.is_quantized:
        tensor = tensor.dequantize()
    if tensor.layout != torch.strided:
        tensor = tensor.to_dense()
    return tensor


def chunks(tensor: torch.Tensor):
    """The tensor's values as flat float64 slices (complex: their magnitudes)."""
    flat = tensor.reshape(-1)
    for start in range(0, flat.numel(), CHUNK):
        part = flat[start:start + CHUNK]
        part = part.abs() if part.is_complex() else part
        yield part.to(torch.float64)


def stats(entry: TensorEntry) -> dict[str, Any]:
    """min, max, mean, std (population), NaN and Inf counts and the fraction of zeros; min, max,
    mean and std are of the finite values (None when there are none)."""
    tensor = values(entry)
    count = finite = nans = infs = zeros = 0
    total = squares = 0.0
    low, high = math.inf, -math.inf
    for part in chunks(tensor):
        count += part.numel()
        nan = torch.isnan(part)
        inf = torch.isinf(part)
        nans += int(nan.sum())
        infs += int(inf.sum())
        zeros += int((part == 0).sum())
        good = part[~(nan | inf)]
        if good.numel():
            finite += good.numel()
            total += float(good.sum())
            low, high = min(low, float(good.min())), max(high, float(good.max()))
    mean = total / finite if finite else None
    if finite:  # a second pass: the sum of squared deviations does not cancel as E[x²] − E[x]² can
        squares = sum(float(((p[torch.isfinite(p)]) - mean).square().sum()) for p in chunks(tensor))
    return {
        "min": low if finite else None, "max": high if finite else None, "mean": mean,
        "std": math.sqrt(squares / finite) if finite else None,
        "nan": nans, "inf": infs, "zeros": zeros / count if count else 0.0, "count": count,
    }


def histogram(entry: TensorEntry, bins: int = 40, found: dict[str, Any] | None = None) -> tuple[list[float], list[int]]:
    """Counts of the finite values in ``bins`` equal bins between their min and max: (edges, counts).
    ``found``: the tensor's stats when already computed (they give the range)."""
    tensor = values(entry)
    found = found or stats(entry)
    if found["min"] is None:
        return [], []
    low, high = found["min"], found["max"]
    if low == high:
        return [low, high], [found["count"] - found["nan"] - found["inf"]]
    counts = torch.zeros(bins, dtype=torch.int64)
    for part in chunks(tensor):
        part = part[torch.isfinite(part)]
        counts += torch.histc(part, bins=bins, min=low, max=high).to(torch.int64)
    step = (high - low) / bins
    return [low + i * step for i in range(bins + 1)], counts.tolist()
