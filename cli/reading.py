"""The commands that read saved runs and model files: inspect, diff, evaluate, predict, export.

Registered on the app by ``cli.main``; like it, they import torch only inside the command, so
``torchdeck --help`` stays fast.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from cli.common import EXIT_FAILED, _code_option, _error, _json
from engine.errors import TorchdeckError
from engine.text import printable


def inspect(
    path: Path = typer.Argument(..., help="a run directory, or any model file: torch.save (state dict, checkpoint, "
                                "Lightning .ckpt, a whole model), TorchScript, .safetensors (or a sharded "
                                "model's index or folder), .onnx"),
    depth: Optional[int] = typer.Option(None, "--depth", min=0, help="fold the tensor tree below this depth"),
    pattern: Optional[str] = typer.Option(None, "--filter", help="only tensors whose name matches: a glob "
                                          "(*.bias) or a part of the name"),
    stats: bool = typer.Option(False, "--stats", help="min, max, mean, std, NaN, Inf and zeros of each tensor "
                               "(reads the values, a tensor at a time)"),
    json_out: bool = typer.Option(False, "--json", help="print the description as JSON"),
) -> None:
    """Show what a model file holds, without running anything in it: a run's config, progress,
    metrics and history; any file's tensor tree, values, optimizer state and signature."""
    from cli import show, tensors
    from engine.use.inspect import describe_any

    info = describe_any(path, depth, pattern, stats)
    if json_out:
        _json(info)
    elif info["format"] == "torchdeck":
        show.description(info)
        tensors.tree_table(info)
    else:
        tensors.model_file(info)


def diff(
    a: Path = typer.Argument(..., metavar="A", help="model file (torch.save, safetensors, TorchScript, "
                             "ONNX) or run directory"),
    b: Path = typer.Argument(..., metavar="B", help="the model file or run directory to compare it with"),
    strip_prefix: Optional[list[str]] = typer.Option(
        None, "--strip-prefix", metavar="PREFIX", help="remove this prefix from the tensor names of both "
        "(module.); repeatable"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
    show_all: bool = typer.Option(False, "--all", help="list every differing tensor, not the top 20"),
) -> None:
    """Compare two model files tensor by tensor; exit 0 when equal, 1 when they differ."""
    from cli import show
    from engine.use.diff import diff as compare

    result = compare(a, b, strip_prefix or ())
    _json(result) if json_out else show.difference(result, show_all)
    if not result["equal"]:
        raise typer.Exit(EXIT_FAILED)


class Splits(str, Enum):
    test = "test"
    val = "val"
    train = "train"


def evaluate(
    path: Path = typer.Argument(..., help="run directory (uses best.pt) or .pt checkpoint"),
    split: Splits = typer.Option(Splits.test, "--split", help="which split to evaluate"),
    json_out: bool = typer.Option(False, "--json", help="print the results as JSON"),
    code: Optional[list[Path]] = _code_option(),
) -> None:
    """Metrics, confusion matrix and classification report on a data split."""
    from cli import show
    from engine.use.evaluate import evaluate as run_evaluation
    from engine.use.saved import load

    result = run_evaluation(load(path, code=code or ()), split.value)
    _json(result) if json_out else show.evaluation(result)


def predict(
    path: Path = typer.Argument(..., help="run directory (uses best.pt) or .pt checkpoint"),
    images: Optional[list[Path]] = typer.Argument(None, help="image files, for image tasks"),
    inputs: Optional[list[str]] = typer.Option(None, "--input", "-i", help="comma-separated feature values; repeatable"),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="CSV file of rows to predict"),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="classes to show per input"),
    json_out: bool = typer.Option(False, "--json", help="print the predictions as JSON"),
    code: Optional[list[Path]] = _code_option(),
) -> None:
    """Predict classes (with probabilities) or values for new inputs: feature values or images."""
    from cli import show
    from engine.use.predict import parse_rows, predict_images, read_csv
    from engine.use.predict import predict as run_prediction
    from engine.use.saved import load

    if sum(map(bool, (images, inputs, csv_file))) != 1:
        raise TorchdeckError("give image files, --input values (repeatable) or --csv FILE: one of the three")
    saved = load(path, code=code or ())
    if images:
        predictions = predict_images(saved, images, top_k)
    else:
        rows = parse_rows(inputs, saved.meta) if inputs else read_csv(csv_file, saved.meta)
        predictions = run_prediction(saved, rows, top_k)
    _json(predictions) if json_out else show.predictions(predictions, saved.meta)


def export(
    path: Path = typer.Argument(..., help="run directory (uses best.pt) or .pt checkpoint"),
    format_name: str = typer.Option("torchscript", "--format", "-f", help="torchscript, onnx, state-dict or safetensors"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="file or folder to write (default: export/ beside the checkpoint); the sidecar is FILE.json"
    ),
    json_out: bool = typer.Option(False, "--json", help="print the sidecar, paths and timings as JSON"),
    code: Optional[list[Path]] = _code_option(),
) -> None:
    """Export the model for use without torchdeck, with a JSON sidecar on preprocessing; verified."""
    from cli import signals
    from engine.use.export import ExportFailed, export_format
    from engine.use.export import export as run_export
    from engine.use.saved import load

    export_format(format_name)  # an unknown format or a missing extra fails before any loading
    try:
        with signals.unwind_on_signals():  # a stopped export leaves no temporary behind
            result = run_export(load(path, code=code or ()), format_name, out)
    except ExportFailed as exc:
        _error(str(exc))
        raise typer.Exit(EXIT_FAILED)
    if json_out:
        _json(result)
        return
    check = result["verification"]
    print(printable(f"{result['format']:<12} {result['path']}  {result['bytes'] / 1024:,.1f} KiB  "
                    f"(from {result['source']['checkpoint']}, epoch {result['source']['epoch']})"))
    print(printable(f"{'sidecar':<12} {result['sidecar']}"))
    print(f"{'verified':<12} {check['samples']} samples of {check['inputs']}: largest difference "
          f"{check['max_abs_diff']:.3g} (tolerance {check['tolerance']:.3g})")
    print(f"{'took':<12} {result['export_seconds']:.2f} s to export, {result['verify_seconds']:.2f} s to verify")


class Statuses(str, Enum):
    finished = "finished"
    stopped = "stopped"
    failed = "failed"
    running = "running"


class Sorts(str, Enum):
    best = "best"
    date = "date"
    name = "name"


def runs(
    folder: Path = typer.Argument(Path("checkpoints"), metavar="DIR", help="folder of run directories"),
    task: Optional[str] = typer.Option(None, "--task", help="only the runs of this task"),
    status: Optional[Statuses] = typer.Option(None, "--status", help="only the runs in this state"),
    sort: Sorts = typer.Option(Sorts.date, "--sort", help="date (newest first), best (best metric first) or name"),
    json_out: bool = typer.Option(False, "--json", help="print the runs as JSON"),
) -> None:
    """List the runs in a folder: task, model, status, epochs, best and test metric, duration, date.
    Read from config.toml and events.jsonl alone, never a checkpoint, so a big folder lists fast."""
    from cli import show
    from engine.store.runs import list_runs
    from engine.use.compare import rank

    if not folder.is_dir():
        raise TorchdeckError(f"{folder}: no such folder of run directories")
    found = [run for run in list_runs(folder)
             if (task is None or run["task"] == task) and (status is None or run["status"] == status.value)]
    if sort is Sorts.best:
        found.sort(key=rank)
    elif sort is Sorts.name:
        found.sort(key=lambda run: run["name"])
    _json([_jsonable(run) for run in found]) if json_out else show.run_list(found)


def compare(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN RUN...", help="run directories to compare"),
    json_out: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
) -> None:
    """Compare runs: the options that differ between them, best and test metrics, duration (best
    first), and on a terminal a chart of their validation loss."""
    from cli import show
    from engine.use.compare import compare as run_comparison

    if len(run_dirs) < 2:
        raise TorchdeckError("compare needs two run directories or more")
    result = run_comparison(run_dirs)
    if json_out:
        _json({**result, "runs": [_jsonable(run) for run in result["runs"]]})
        return
    show.comparison(result)
    if sys.stdout.isatty():
        show.loss_chart(result["runs"])


def _jsonable(run: dict) -> dict:
    """A run summary as JSON holds it: its path as text."""
    return {**run, "path": str(run["path"])}
