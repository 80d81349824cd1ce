"""``diff``: how two model files' tensors differ, whatever wrote each of them.

Names are matched after stripping the prefixes a wrapper adds (DataParallel's ``module.``), so a
wrapped copy compares with the plain one. Values are compared a slice at a time in float64 (see
engine.use.tensorstats), so two large tensors cost two slices beyond their pages, never a copy.

NaN: a position where both files hold NaN counts as equal; where only one does, it is counted in
``nan_mismatch`` and left out of ``max_abs_diff`` and ``rel_rms``, and the tensor differs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from engine.errors import TorchdeckError
from engine.store.modelfiles import ModelFile, TensorEntry, open_file
from engine.use.inspect import model_path
from engine.use.tensorstats import CHUNK, values


def diff(a: str | Path, b: str | Path, strip_prefix: Iterable[str] = ()) -> dict[str, Any]:
    """What differs between the tensors of ``a`` and ``b`` (files, or run directories: their checkpoint).

    ``only_a``, ``only_b``: names in one file alone; ``changed``: names whose shape or dtype
    differs; ``common``: every name of the same shape in both, with ``max_abs_diff``, ``rel_rms``
    (‖a−b‖₂ / ‖a‖₂: 0 when both are zero, inf when only a is), ``nan_mismatch`` and ``equal``.
    ``equal`` at the top: nothing alone, nothing changed, every common tensor equal.
    """
    prefixes = [p for p in strip_prefix if p]
    files = [open_file(model_path(path)[0]) for path in (a, b)]
    tensors_a, tensors_b = (_renamed(f, prefixes) for f in files)
    only_a = [name for name in tensors_a if name not in tensors_b]
    only_b = [name for name in tensors_b if name not in tensors_a]
    changed, common = [], []
    for name, left in tensors_a.items():
        right = tensors_b.get(name)
        if right is None:
            continue
        if left.shape != right.shape or left.dtype != right.dtype:
            changed.append({"name": name, "a_shape": list(left.shape), "a_dtype": left.dtype,
                            "b_shape": list(right.shape), "b_dtype": right.dtype})
        if left.shape == right.shape:
            common.append(_compare(name, left, right))
    equal_tensors = sum(item["equal"] for item in common)
    return {
        "a": {"path": str(files[0].path), "format": files[0].format},
        "b": {"path": str(files[1].path), "format": files[1].format},
        "strip_prefix": prefixes,
        "only_a": only_a, "only_b": only_b, "changed": changed, "common": common,
        "equal_tensors": equal_tensors,
        "different_tensors": len(tensors_a) - len(only_a) - equal_tensors,
        "equal": not only_a and not only_b and not changed and equal_tensors == len(common),
    }


def _renamed(found: ModelFile, prefixes: list[str]) -> dict[str, TensorEntry]:
    """The file's tensors by name with each prefix stripped, in order, from the names that start with it."""
    renamed: dict[str, TensorEntry] = {}
    for name, tensor in found.tensors.items():
        short = name
        for prefix in prefixes:
            short = short.removeprefix(prefix)
        if short in renamed:
            raise TorchdeckError(f"{found.path}: {renamed[short].name!r} and {name!r} are both {short!r} "
                                 f"once {', '.join(map(repr, prefixes))} is stripped")
        renamed[short] = tensor
    return renamed


def _compare(name: str, left: TensorEntry, right: TensorEntry) -> dict[str, Any]:
    """Largest difference, relative RMS change and one-sided NaNs of two tensors of one shape."""
    highest = squares = norm = 0.0
    mismatched = 0
    for x, y in _slices(values(left), values(right)):
        x_nan, y_nan = torch.isnan(x), torch.isnan(y)
        mismatched += int((x_nan ^ y_nan).sum())
        keep = ~(x_nan | y_nan)
        x, y = x[keep], y[keep]
        gap = torch.where(x == y, 0.0, (x - y).abs())  # equal infinities differ by 0, not NaN
        if gap.numel():
            highest = max(highest, float(gap.max()))
            squares += float(gap.square().sum())
            norm += float(x.abs().square().sum())
    if squares == 0:
        rel_rms = 0.0
    elif norm == 0 or math.isinf(squares):
        rel_rms = math.inf
    else:
        rel_rms = math.sqrt(squares) / math.sqrt(norm)
    return {"name": name, "shape": list(left.shape), "a_dtype": left.dtype, "b_dtype": right.dtype,
            "max_abs_diff": highest, "rel_rms": rel_rms, "nan_mismatch": mismatched,
            "equal": highest == 0 and mismatched == 0 and left.dtype == right.dtype}


def _slices(a: torch.Tensor, b: torch.Tensor):
    """Both tensors' values side by side, CHUNK elements at a time, in float64 (complex128 for complex)."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    wide = torch.complex128 if a.is_complex() or b.is_complex() else torch.float64
    for start in range(0, flat_a.numel(), CHUNK):
        yield flat_a[start:start + CHUNK].to(wide), flat_b[start:start + CHUNK].to(wide)
