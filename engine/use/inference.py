"""Using a saved run: describe it, evaluate it on a split, predict new samples.

Everything here starts from a run directory or a checkpoint file and needs nothing else: the
model is rebuilt from the catalog by the checkpoint's config, the data split is rebuilt with
the same fixed seed, and inputs are scaled with the scaler statistics stored at training time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.data.split import outputs_of
from engine.data.tables import encode, read_rows
from engine.data.tasks import load_task
from engine.errors import CheckpointError, DataError, TorchdeckError
from engine.store import checkpoint, rundir
from engine.text import first_line
from engine.train.losses import build_loss
from engine.train.metrics import compute, labels, predict_classes, probabilities
from engine.train.models import build_model


@dataclass
class SavedRun:
    """A checkpoint loaded for use: its config, task metadata and model in eval mode."""

    path: Path
    run_dir: Path | None
    state: dict[str, Any]
    config: RunConfig
    meta: TaskMeta
    model: torch.nn.Module


def load(path: str | Path, prefer: str = rundir.BEST) -> SavedRun:
    """Load the run at ``path``; a run directory gives its ``best.pt`` unless ``prefer`` says otherwise."""
    ckpt_path, run_dir = rundir.locate(path, prefer)
    state = checkpoint.load(ckpt_path)
    try:
        config = RunConfig.from_dict(state["config"])
        meta = TaskMeta.from_dict(state["task"])
        model = build_model(config.replace(weights=None), meta)  # the checkpoint holds the weights
        model.load_state_dict(state["model"])
    except TorchdeckError as exc:
        raise CheckpointError(f"{ckpt_path} holds a config this torchdeck cannot use: {exc}") from None
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt_path} is incomplete or does not fit its config ({first_line(exc)})") from None
    model.eval()
    return SavedRun(ckpt_path, run_dir, state, config, meta, model)


def describe(path: str | Path) -> dict[str, Any]:
    """Everything ``inspect`` shows: config, progress, metrics, history, layers, files, versions."""
    saved = load(path, prefer=rundir.LAST)
    state = saved.state
    history = state.get("train_state", {}).get("history", [])
    layers = [
        {"name": name, "shape": list(tensor.shape), "parameters": tensor.numel()}
        for name, tensor in saved.model.state_dict().items()
        if name in dict(saved.model.named_parameters())
    ]
    files = {}
    if saved.run_dir is not None:
        files = {str(p.relative_to(saved.run_dir)): p.stat().st_size for p in sorted(saved.run_dir.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}  # exports sit in export/
    about = (rundir.summary(saved.run_dir) if saved.run_dir else None) or {}  # why it stopped or failed
    return {
        "path": str(saved.path),
        "run_dir": str(saved.run_dir) if saved.run_dir else None,
        "status": rundir.status(saved.run_dir) if saved.run_dir else None,
        "reason": about.get("reason", ""),
        "message": about.get("message", ""),
        "task": saved.meta.task,
        "kind": saved.meta.kind,
        "classes": saved.meta.class_names,
        "features": saved.meta.feature_names,
        "config": saved.config.to_dict(),
        "epoch": state["epoch"],
        "epochs": saved.config.epochs,
        "global_step": state.get("global_step", 0),
        "best": state.get("train_state", {}).get("best", {}),
        "last": history[-1] if history else None,
        "test": state.get("test"),
        "history": history,
        "parameters": sum(layer["parameters"] for layer in layers),
        "layers": layers,
        "file_size": saved.path.stat().st_size,
        "files": files,
        "versions": state.get("versions", {}),
        "saved_at": state.get("saved_at"),
    }


def evaluate(saved: SavedRun, split: str = "test") -> dict[str, Any]:
    """Loss and metrics on a split; for classifiers also the confusion matrix and report."""
    data = load_task(saved.config, "cpu", saved.meta).splits[split]
    outputs = data.outputs(saved.model)
    kind = saved.meta.kind
    result: dict[str, Any] = {
        "path": str(saved.path),
        "split": split,
        "samples": len(data),
        "loss": float(build_loss(saved.config, kind)(outputs, data.y)),
        "metrics": compute(kind, outputs, data.y, saved.meta),
    }
    if kind != "regression":
        names = saved.meta.class_names
        truth, guess = labels(kind, data.y), predict_classes(kind, outputs).numpy()
        every = list(range(len(names)))
        result["classes"] = names
        result["confusion_matrix"] = skm.confusion_matrix(truth, guess, labels=every).tolist()
        result["report"] = skm.classification_report(
            truth, guess, labels=every, target_names=names, output_dict=True, zero_division=0
        )
    return result


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
    images = torch.stack([_read_image(Path(path), saved.meta) for path in paths])
    outputs = outputs_of(saved.model, saved.meta.scale_images(images))
    return _answers(saved, [str(path) for path in paths], outputs, top_k)


def _read_image(path: Path, meta: TaskMeta) -> torch.Tensor:
    """An image file as uint8 (C, H, W) in the training mode (grayscale or RGB) and size."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    height, width = meta.input_shape[1:]
    try:
        with Image.open(path) as image:
            image = image.convert(meta.image_mode).resize((width, height), Image.Resampling.BILINEAR)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path} is not an image torchdeck can read ({type(exc).__name__})") from None
    return pil_to_tensor(image)


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
        missing = [name for name in feature_names if name not in header]
        if missing:
            raise DataError(
                f"{path}: the header does not name the column(s) {', '.join(map(repr, missing))}; "
                f"name every feature ({', '.join(feature_names)}) or leave the header out"
            )
        columns, exact, table = [header.index(name) for name in feature_names], False, table[1:]
    if not table:
        raise DataError(f"{path} has a header but no rows")
    rows = []
    for number, row in table:
        if exact and len(row) != len(columns) or len(row) <= max(columns):
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
    if not np.isfinite(value):
        raise DataError(f"{where}: {text.strip()!r} is not a finite number")
    return value
