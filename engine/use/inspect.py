"""What ``inspect`` and the browser's details show about a saved run, or any model file.

The checkpoint says what was trained and how far; the run directory beside it (when there is
one) says why the run stopped or failed, which a checkpoint written before the end cannot know.
A file of another tool (a state dict, a Lightning checkpoint, safetensors, TorchScript, ONNX) is
described from what engine.store.modelfiles reads of it, nothing of it run: its tensor tree,
values, optimizer state and, with ``stats``, each tensor's statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.errors import CheckpointError, TorchdeckError
from engine.store import rundir, runs
from engine.store.modelfiles import ModelFile, open_file
from engine.use import tensorstats, tensortree

# State-dict entries that are buffers a layer keeps, not parameters it learns (BatchNorm's).
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def describe(path: str | Path) -> dict[str, Any]:
    """Everything ``inspect`` shows: config, progress, metrics, history, layers, files, versions.

    It reads the checkpoint and builds its model on the meta device only (shapes, no memory) to
    check that the weights fit the config (see saved.build); a run of the user's own code is described without
    that code, nothing of it imported. (The catalogs the model is built from are imported here, not
    above: a file of another tool is described without them, in a second less.)
    """
    from engine.config import RunConfig
    from engine.store import checkpoint, trust
    from engine.use import saved

    ckpt_path, run_dir = runs.locate(path, rundir.LAST)
    state = checkpoint.load(ckpt_path)
    try:
        config = RunConfig.from_dict(state["config"])
    except TorchdeckError as exc:
        raise CheckpointError(f"{ckpt_path} holds a config this torchdeck cannot use: {exc}") from None
    modules = {}
    if not trust.references(config):  # the weights must fit the config; the user's code is not run for it
        model = saved.build(ckpt_path, config, state, shapes_only=True)[1]
        modules = {name: f"{type(m).__module__}.{type(m).__qualname__}" for name, m in model.named_modules()}
    history = state.get("train_state", {}).get("history", [])
    layers = [{"name": name, "shape": list(tensor.shape), "parameters": tensor.numel()}
              for name, tensor in state["model"].items() if name.rpartition(".")[2] not in _BUFFERS]
    files = {}
    if run_dir is not None:
        files = {str(p.relative_to(run_dir)): p.stat().st_size for p in sorted(run_dir.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")}  # exports sit in export/
    about = (runs.summary(run_dir) if run_dir else None) or {}  # why it stopped or failed
    task = state["task"]
    return {
        "path": str(ckpt_path),
        "run_dir": str(run_dir) if run_dir else None,
        "status": runs.status(run_dir) if run_dir else None,
        "reason": about.get("reason", ""),
        "message": about.get("message", ""),
        "task": task["task"],
        "kind": task["kind"],
        "classes": task["class_names"],
        "features": task["feature_names"],
        "config": config.to_dict(),
        "epoch": state["epoch"],
        "epochs": config.epochs,
        "global_step": state.get("global_step", 0),
        "best": state.get("train_state", {}).get("best", {}),
        "last": history[-1] if history else None,
        "test": state.get("test"),
        "history": history,
        "parameters": sum(layer["parameters"] for layer in layers),
        "layers": layers,
        "modules": modules,
        "file_size": ckpt_path.stat().st_size,
        "files": files,
        "versions": state.get("versions", {}),
        "saved_at": state.get("saved_at"),
    }


def model_path(path: str | Path) -> tuple[Path, bool]:
    """The model file ``path`` means, and whether it is a torchdeck run's: a run directory gives
    its checkpoint; any other folder is left to the readers (a safetensors model's)."""
    path = Path(path)
    if path.is_dir() and any((path / name).exists() for name in (rundir.EVENTS, rundir.LAST, rundir.BEST)):
        return runs.locate(path, rundir.LAST)[0], True
    return path, False


def describe_any(path: str | Path, depth: int | None = None, pattern: str | None = None,
                 stats: bool = False) -> dict[str, Any]:
    """What ``inspect`` shows of any model file: a torchdeck run's description (describe), or
    the file's facts, with its tensor tree (``depth``, ``pattern``) and, with ``stats``, the
    statistics of each tensor the pattern keeps."""
    file, is_run = model_path(path)
    opened = open_file(file)
    info: dict[str, Any] = describe(file) if is_run or opened.format == "torchdeck" else {}
    info.update({key: value for key, value in opened.to_dict().items() if key not in info or key == "path"})
    if opened.format == "torchdeck":
        info["modules"] = info.get("modules") or opened.modules
    info["tree"] = tensortree.build(opened.tensors.values(), depth, pattern).to_dict()
    info["stats"] = tensor_stats(opened, pattern) if stats else {}
    return info


def tensor_stats(opened: ModelFile, pattern: str | None = None) -> dict[str, dict[str, Any]]:
    """Each kept tensor's statistics, read one tensor at a time; a tensor whose values cannot
    be read has its reason instead."""
    found = {}
    for name, entry in opened.tensors.items():
        if tensortree.matches(name, pattern):
            try:
                found[name] = tensorstats.stats(entry)
            except TorchdeckError as exc:
                found[name] = {"error": str(exc)}
    return found
