"""Predictions of a saved run for new samples: feature values, table rows or image files.

New inputs are prepared exactly as the training data was: table rows are encoded by the very
function training used and scaled with the stored statistics, images are opened, converted and
resized as the image-folder task does, so a model never sees inputs of another kind.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms.functional import pil_to_tensor

from engine.data.folders import open_image
from engine.data.meta import TaskMeta
from engine.data.split import outputs_of
from engine.data.tables import encode, fits_float32, read_rows
from engine.errors import DataError
from engine.train.metrics import probabilities
from engine.use.saved import SavedRun


def predict(saved: SavedRun, rows: np.ndarray | list[list[str]], top_k: int = 3) -> list[dict[str, Any]]:
    """Predictions for raw (unscaled) feature rows: top-k classes or a regression value.

    A table with text columns (``meta.columns``, the csv task) takes its rows as text cells and
    encodes them as training did; other tables take an array of numbers.
    """
    if saved.meta.image_mode is not None:
        raise DataError(f"the task '{saved.meta.task}' takes images: give image files instead of values")
    if saved.meta.columns is not None:
        outputs = outputs_of(saved.model, saved.meta.scale_inputs(encode(saved.meta.columns, rows)))
        return _answers(saved, [[cell.strip() for cell in row] for row in rows], outputs, top_k)
    expected = saved.meta.input_shape[0]
    if rows.ndim != 2 or rows.shape[1] != expected:
        got = rows.shape[1] if rows.ndim == 2 else rows.size
        raise DataError(f"each input needs {expected} values ({', '.join(saved.meta.feature_names)}), got {got}")
    outputs = outputs_of(saved.model, saved.meta.scale_inputs(rows))
    return _answers(saved, [row.tolist() for row in rows], outputs, top_k)


def predict_images(saved: SavedRun, paths: list[str | Path], top_k: int = 3) -> list[dict[str, Any]]:
    """Predictions for image files of any common format, prepared as the training images were."""
    if saved.meta.image_mode is None:
        raise DataError(f"the task '{saved.meta.task}' takes feature values, not images: use --input or --csv")
    height, width = saved.meta.input_shape[1:]
    images = torch.stack([pil_to_tensor(open_image(Path(path), saved.meta.image_mode, (width, height)))
                          for path in paths])
    outputs = outputs_of(saved.model, saved.meta.scale_images(images))
    return _answers(saved, [str(path) for path in paths], outputs, top_k)


def _answers(saved: SavedRun, inputs: list[Any], outputs: torch.Tensor, top_k: int) -> list[dict[str, Any]]:
    """Model outputs as answers a person reads: top-k classes with probabilities, or a value."""
    if saved.meta.kind == "regression":
        values = saved.meta.unscale_targets(outputs).reshape(len(inputs), -1)
        return [{"input": given, "value": float(value[0])} for given, value in zip(inputs, values)]
    probs = probabilities(saved.meta.kind, outputs)
    top = probs.topk(min(top_k, probs.shape[1]), dim=1)
    names = saved.meta.class_names
    return [
        {
            "input": given,
            "class": names[int(indices[0])],
            "top": [{"class": names[int(i)], "probability": float(p)} for p, i in zip(chances, indices)],
        }
        for given, chances, indices in zip(inputs, top.values, top.indices)
    ]


def parse_rows(texts: list[str], meta: TaskMeta) -> np.ndarray | list[list[str]]:
    """``--input`` values such as ``5.1,3.5,1.4,0.2`` as an array, one row each; for a table with
    text columns (``meta.columns``) the values as text, split as a CSV line (quotes allowed)."""
    if meta.columns is not None:
        return [next(csv.reader([text], skipinitialspace=True)) for text in texts]
    rows = [[_number(part, f"--input {text!r}") for part in text.split(",")] for text in texts]
    if len({len(row) for row in rows}) > 1:
        raise DataError("every --input needs the same number of values")
    return np.asarray(rows, dtype=np.float64)


def read_csv(path: str | Path, meta: TaskMeta) -> np.ndarray | list[list[str]]:
    """Rows of a CSV file, one sample each: numbers, or text cells for a table with text columns.

    With a header, columns are taken by name (any order; other columns such as the target are
    skipped), and a header that does not name every feature is an error rather than a guess.
    Without a header, each row must hold exactly the features, in training order. The first
    row is a header when it is not all numbers or, in a table with text columns, names a feature.
    """
    path, feature_names, text = Path(path), meta.feature_names, meta.columns is not None
    table = read_rows(path)
    header = [cell.strip() for cell in table[0][1]]
    if set(header).isdisjoint(feature_names) if text else _is_numeric(header):
        columns = list(range(len(feature_names)))
        exact = True
    else:
        index = {name: i for i, name in reversed(list(enumerate(header)))}  # a name given twice: its first column
        missing = [name for name in feature_names if name not in index]
        if missing:
            raise DataError(
                f"{path}: the header does not name the column(s) {', '.join(map(repr, missing))}; "
                f"name every feature ({', '.join(feature_names)}) or leave the header out"
            )
        columns, exact, table = [index[name] for name in feature_names], False, table[1:]
    if not table:
        raise DataError(f"{path} has a header but no rows")
    rows, needed = [], max(columns)
    for number, row in table:
        if exact and len(row) != len(columns) or len(row) <= needed:
            raise DataError(f"{path} line {number} has {len(row)} values, expected {len(columns)}")
        cells = [row[c] for c in columns]
        rows.append(cells if text else [_number(cell, f"{path} line {number}") for cell in cells])
    return rows if text else np.asarray(rows, dtype=np.float64)


def _is_numeric(cells: list[str]) -> bool:
    try:
        [float(cell) for cell in cells]
    except ValueError:
        return False
    return True


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {text.strip()!r} is not a number") from None
    if not fits_float32(value):  # as the csv task refuses them (engine.data.tables)
        raise DataError(f"{where}: {text.strip()!r} is not a finite number within ±3.4e38 (the float32 a model "
                        f"computes in)")
    return value
