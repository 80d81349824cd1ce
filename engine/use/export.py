"""Exporting a trained model for use without torchdeck: TorchScript, ONNX, a state dict or safetensors.

A checkpoint holds what torchdeck needs to rebuild a model, but whoever serves the model (a web
service, a phone app, another language) has neither torchdeck nor its catalogs. An export is one
model file plus a JSON sidecar beside it (``FILE.json``) that says how to turn raw inputs into
the tensor the model takes (the features' order and scaler, the csv task's column encoding, or
an image's mode, size and normalisation) and how to read what comes out (class names, the scale
of a regression target).

Nothing is reported done unless it works: the file is written under a temporary name, loaded
back the way a consumer loads it (``torch.jit.load``, an onnxruntime session, or the weights
read safely into a freshly built model), run on real samples of the task
and compared with the checkpoint's own model. Only then are the file and its sidecar renamed
into place (engine.store.atomic), so a failed export leaves nothing behind and never
half-replaces an earlier one.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import importlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import safetensors.torch
import torch
from torch import nn

from engine.catalog import Catalog
from engine.data.meta import TaskMeta
from engine.data.split import outputs_of
from engine.data.tables import MISSING
from engine.data.tasks import load_task
from engine.errors import DataError, TorchdeckError
from engine.events import strict_json
from engine.store import atomic, checkpoint
from engine.text import first_line
from engine.train.models import MODELS, build_model
from engine.use.saved import SavedRun

EXPORT_DIR = "export"  # default home of exports, beside the checkpoint
SAMPLES = 64  # test samples run through both models
EXAMPLE = 2  # samples the model is traced with: fewer than SAMPLES, so verifying proves the batch size is free
ATOL, RTOL = 1e-5, 1e-4  # float32 kernels differ between runtimes by rounding, far below this
INPUT, OUTPUT = "input", "output"  # tensor names in the ONNX graph
ONNX_EXTRA = 'pip install -e ".[onnx]"'


class ExportError(TorchdeckError):
    """The export cannot start: an optional package is missing, or the output cannot be written."""


class ExportFailed(Exception):
    """The exporter broke, or the exported model does not compute what the checkpoint's does.

    Not the user's input to fix (the CLI exits 1, not 2); nothing was kept.
    """


Runner = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    description: str
    suffix: str  # ending of the default file name
    write: Callable[[nn.Module, torch.Tensor, Path], None]  # (model in eval mode, example inputs, file)
    reload: Callable[[Path, SavedRun], Runner]  # the written file, loaded back as a consumer would
    usage: str  # how a consumer loads the file, for the sidecar
    needs: tuple[str, ...] = ()  # modules of the optional extra this format needs
    graph: bool = True  # False: the file holds the weights alone, and the sidecar describes the layers


# --- the formats --------------------------------------------------------------------------


@contextlib.contextmanager
def _torchscript_quietly():
    """Recent torch marks TorchScript deprecated at every call; it still writes and reads it, and
    the README says so once rather than each export printing torch's warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace (the catalog's models have no data-dependent control flow) and save the graph."""
    with _torchscript_quietly():
        torch.jit.save(torch.jit.trace(model, example), str(path))


def _reload_torchscript(path: Path, saved: SavedRun) -> Runner:
    with _torchscript_quietly():
        module = torch.jit.load(str(path), map_location="cpu")
    return module.eval()


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """torch.export-based ONNX with a free batch dimension, weights inside the one file."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # progress lines and notes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=True, external_data=False, verbose=False,
            input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
        )


def _reload_onnx(path: Path, saved: SavedRun) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes about providers are not the user's concern
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])


def _write_state_dict(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    torch.save(dict(model.state_dict()), path)


def _write_safetensors(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Each tensor a contiguous copy of its own: the format refuses tensors sharing memory (tied weights)."""
    tensors = {key: tensor.detach().cpu().contiguous().clone() for key, tensor in model.state_dict().items()}
    path.write_bytes(safetensors.torch.save(tensors, metadata={"format": "pt"}))


def _reload_weights(read: Callable[[Path], dict[str, torch.Tensor]], path: Path, saved: SavedRun) -> Runner:
    """Exactly what a consumer does: the file's tensors, read safely, into a model built from the same description."""
    model = build_model(saved.config.replace(weights=None), saved.meta)
    model.load_state_dict(read(path))
    return model.eval()


FORMATS: Catalog[ExportFormat] = Catalog(
    "format",
    [
        ExportFormat(
            "torchscript", "the TorchScript graph and weights, for torch.jit.load (Python, C++ LibTorch)",
            ".torchscript.pt", _write_torchscript, _reload_torchscript,
            "model = torch.jit.load(FILE); model.eval(); outputs = model(inputs)",
        ),
        ExportFormat(
            "onnx", "the ONNX graph and weights, for onnxruntime and other ONNX runtimes",
            ".onnx", _write_onnx, _reload_onnx,
            f"session = onnxruntime.InferenceSession(FILE); outputs = session.run(['{OUTPUT}'], "
            f"{{'{INPUT}': inputs}})[0]",
            needs=("onnx", "onnxscript", "onnxruntime"),
        ),
        ExportFormat(
            "state-dict", "the weights alone (tensors), for the architecture the sidecar describes",
            ".state_dict.pt", _write_state_dict,
            functools.partial(_reload_weights, lambda path: torch.load(path, map_location="cpu", weights_only=True)),
            "model.load_state_dict(torch.load(FILE, weights_only=True)) into the architecture in 'model'", graph=False,
        ),
        ExportFormat(
            "safetensors", "the weights alone (safetensors), for the architecture the sidecar describes", ".safetensors",
            _write_safetensors, functools.partial(_reload_weights, lambda path: safetensors.torch.load(path.read_bytes())),
            "model.load_state_dict(safetensors.torch.load_file(FILE)) into the architecture in 'model'", graph=False,
        ),
    ],
)


def export_format(name: str) -> ExportFormat:
    """The format called ``name``, with its optional packages present; a one-line error otherwise."""
    spec = FORMATS.entry(name, "format")
    missing = [module for module in spec.needs if not _importable(module)]
    if missing:
        raise ExportError(f"{name} export needs the optional package(s) {', '.join(missing)}: {ONNX_EXTRA}")
    return spec


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


# --- exporting ------------------------------------------------------------------------------


def default_path(saved: SavedRun, spec: ExportFormat) -> Path:
    """``export/<checkpoint name><suffix>`` beside the checkpoint: RUN/export/best.onnx and so on."""
    return saved.path.parent / EXPORT_DIR / (saved.path.stem + spec.suffix)


def sidecar_path(path: Path) -> Path:
    """The sidecar of an exported file: its name with ``.json`` added (best.onnx → best.onnx.json)."""
    return path.with_name(path.name + ".json")


def export(saved: SavedRun, format_name: str, out: str | Path | None = None) -> dict[str, Any]:
    """Write ``saved``'s model in the format, verify it, and return its sidecar with paths and timings.

    ``out`` is the file to write (a folder: the default name inside it); by default it goes to
    :func:`default_path`. Raises :class:`ExportFailed` when the exporter breaks or the exported
    model's outputs differ from the checkpoint's by more than the tolerance.
    """
    spec = export_format(format_name)
    path = _destination(saved, spec, out)
    inputs, source = sample_inputs(saved)
    made_folder = _make_folder(path.parent)
    atomic.remove_stale(path.parent, path.name)  # what a killed export of this file left (and of its sidecar)
    try:  # the inner block ends first: the model is published, then its sidecar
        with atomic.staged(sidecar_path(path)) as sidecar_temporary, atomic.staged(path) as temporary:
            open(temporary, "xb").close()  # an unwritable place fails here in the system's words, not torch's
            started = time.perf_counter()
            _run_exporter(spec, saved.model, inputs[:EXAMPLE], temporary)
            exported = time.perf_counter()
            check = verify(spec, temporary, saved, inputs, source)
            verified = time.perf_counter()
            info = sidecar(saved, spec, path.name, check)
            sidecar_temporary.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        if made_folder:
            with contextlib.suppress(OSError):  # not empty after all: leave it
                path.parent.rmdir()
        raise
    return {**info, "path": str(path), "sidecar": str(sidecar_path(path)), "bytes": path.stat().st_size,
            "export_seconds": exported - started, "verify_seconds": verified - exported}


def _destination(saved: SavedRun, spec: ExportFormat, out: str | Path | None) -> Path:
    """The file to write: ``out``, the default name inside an ``out`` folder, or :func:`default_path`.

    Only a regular file or nothing may be in its place (or its sidecar's): a device node, a
    folder or a link there would be destroyed or written through. The default ``export/`` folder
    comes with the checkpoint, maybe from someone else, so it must not be a link either.
    """
    path = default_path(saved, spec)
    if out is None and path.parent.is_symlink():
        raise ExportError(f"{path.parent} is a symbolic link; export writes only into a real folder")
    if out is not None:
        out = Path(out).expanduser()
        path = out / path.name if out.is_dir() else out
    for target in (path, sidecar_path(path)):
        if target.is_symlink() or target.exists() and not target.is_file():
            raise ExportError(f"{target} is in the way: export replaces only a regular file")
    return path


def _make_folder(folder: Path) -> bool:
    """Create ``folder`` if needed (True when this did, so a failed export can take it away again);
    an unwritable place is the user's to fix."""
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the folder {folder}: {exc.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise ExportError(f"cannot write to {folder}: permission denied")
    return not existed


def _run_exporter(spec: ExportFormat, model: nn.Module, example: torch.Tensor, path: Path) -> None:
    """The format's writer; its own failures (an operator it cannot express) become ExportFailed."""
    try:
        spec.write(model, example, path)
    except Exception as exc:  # the exporters fail in their own ways; each means the same to the user
        raise ExportFailed(f"the {spec.name} exporter failed: {first_line(exc)}") from exc


# --- verifying ------------------------------------------------------------------------------


def sample_inputs(saved: SavedRun) -> tuple[torch.Tensor, str]:
    """Up to SAMPLES inputs of the test split, prepared by the engine's own task loading.

    The inputs are already normalised, as the model takes them. When the task's data is no longer
    where training found it, random normalised inputs stand in, and the description says so.
    """
    try:
        split = load_task(saved.config, "cpu", saved.meta).splits["test"]
    except DataError as exc:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(SAMPLES, *saved.meta.input_shape, generator=generator)
        return inputs, f"random inputs (the task's data could not be read: {exc})"
    count = min(len(split), SAMPLES)
    inputs, _ = next(iter(split.batches(torch.arange(len(split)), count, 0, 1)))
    return inputs.cpu(), "the test split"


def verify(spec: ExportFormat, path: Path, saved: SavedRun, inputs: torch.Tensor, source: str) -> dict[str, Any]:
    """Load ``path`` back, run it and the checkpoint's model on ``inputs``, and compare the outputs.

    The tolerance is ATOL + RTOL times the largest output, so it follows the outputs' scale. An
    exported model that cannot be loaded, run, or that disagrees raises ExportFailed.
    """
    expected = outputs_of(saved.model, inputs)
    try:
        with torch.no_grad():
            got = spec.reload(path, saved)(inputs)
    except Exception as exc:  # whatever breaks here, the export is unusable
        raise ExportFailed(f"the exported {spec.name} file could not be loaded and run: {first_line(exc)}") from exc
    tolerance = ATOL + RTOL * float(expected.abs().max())
    if got.shape != expected.shape:
        raise ExportFailed(f"the exported {spec.name} model gives outputs of shape {list(got.shape)}, "
                           f"the checkpoint's model {list(expected.shape)}; nothing was written")
    largest = float((got.float() - expected).abs().max())
    if not largest <= tolerance:  # also catches NaN
        raise ExportFailed(
            f"the exported {spec.name} model differs from the checkpoint's by up to {largest:.3g} on "
            f"{len(inputs)} samples of {source} (tolerance {tolerance:.3g}); nothing was written")
    return {"inputs": source, "samples": len(inputs), "max_abs_diff": largest, "tolerance": tolerance,
            "passed": True}


# --- the sidecar ----------------------------------------------------------------------------


def sidecar(saved: SavedRun, spec: ExportFormat, file_name: str, check: dict[str, Any]) -> dict[str, Any]:
    """Everything a consumer without torchdeck needs to feed the model raw inputs and read it."""
    meta, config = saved.meta, saved.config
    outputs = meta.outputs
    model = {
        "name": config.model,
        "options": {option: config.to_dict().get(option) for option in MODELS[config.model].options},
        "parameters": sum(p.numel() for p in saved.model.parameters()),
    }
    if not spec.graph:  # the file has no graph: the layers say what to build
        model["architecture"] = str(saved.model)
    return strict_json({
        "format": spec.name,
        "file": file_name,
        "load": spec.usage,
        "task": meta.task,
        "kind": meta.kind,
        "classes": list(meta.class_names),
        "input": {"name": INPUT, "shape": ["batch", *meta.input_shape], "dtype": "float32"},
        "preprocess": preprocess(meta),
        "output": {"name": OUTPUT, "shape": ["batch", outputs], "dtype": "float32", **postprocess(meta)},
        "model": model,
        "source": {"checkpoint": str(saved.path.resolve()), "epoch": saved.state.get("epoch")},
        "versions": checkpoint.versions(),
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "verification": check,
    })


def preprocess(meta: TaskMeta) -> dict[str, Any]:
    """How a raw input becomes the model's input, with the numbers training fitted."""
    mean, std = meta.x_mean.flatten().tolist(), meta.x_scale.flatten().tolist()
    if meta.image_mode is not None:
        channels, height, width = meta.input_shape
        return {
            "type": "image", "mode": meta.image_mode, "channels": channels, "height": height, "width": width,
            "mean": mean, "std": std,
            "steps": [
                f"convert the image to {'grayscale (PIL mode L)' if meta.image_mode == 'L' else 'RGB'}",
                f"resize it to {width}x{height} pixels, bilinear, without keeping the aspect ratio "
                f"(PIL: image.resize(({width}, {height}), Image.BILINEAR))",
                "take the pixels as floats in [0, 1] (value / 255), channels first: (channels, height, width)",
                "normalise each channel c: (x - mean[c]) / std[c]",
                "stack images into a float32 batch (batch, channels, height, width)",
            ],
        }
    if meta.columns is not None:
        return {
            "type": "table", "columns": meta.columns, "missing": sorted(MISSING - {""}), "mean": mean, "std": std,
            "steps": [
                "take the cells of each row in the order of 'columns', without surrounding spaces",
                "a cell that is empty or, ignoring case, one of 'missing' takes its column's 'fill' value "
                "(a column whose 'fill' is null takes no missing cells)",
                "a number column gives its value; a text column gives one 0/1 value per entry of its "
                "'categories', in order (all 0 for a value not among them)",
                "standardise every resulting value i: (x[i] - mean[i]) / std[i]",
                "stack rows into a float32 batch (batch, features)",
            ],
        }
    return {
        "type": "table", "features": list(meta.feature_names), "mean": mean, "std": std,
        "steps": [
            "take the features of each row in the order of 'features'",
            "standardise each feature i: (x[i] - mean[i]) / std[i]",
            "stack rows into a float32 batch (batch, features)",
        ],
    }


def postprocess(meta: TaskMeta) -> dict[str, Any]:
    """How to read the model's outputs."""
    if meta.kind == "regression":
        return {"meaning": "the standardised target: value = output * y_scale + y_mean",
                "y_mean": float(meta.y_mean), "y_scale": float(meta.y_scale)}
    if meta.kind == "binary":
        return {"meaning": "one logit: sigmoid(output) is the probability of classes[1]; "
                           "output > 0 predicts classes[1], otherwise classes[0]"}
    return {"meaning": "one logit per class, in the order of 'classes': softmax gives the probabilities, "
                       "the largest is the prediction"}
