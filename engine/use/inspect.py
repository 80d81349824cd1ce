"""What ``inspect`` and the browser's details show about a saved run.

The checkpoint says what was trained and how far; the run directory beside it (when there is
one) says why the run stopped or failed, which a checkpoint written before the end cannot know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.errors import CheckpointError, TorchdeckError
from engine.store import checkpoint, rundir, runs, trust
from engine.use import saved

# State-dict entries that are buffers a layer keeps, not parameters it learns (BatchNorm's).
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def describe(path: str | Path) -> dict[str, Any]:
    """Everything ``inspect`` shows: config, progress, metrics, history, layers, files, versions.

    It reads the checkpoint and builds its model on the meta device only (shapes, no memory) to
    check that the weights fit the config (see saved.build); a run of the user's own code is described without
    that code, nothing of it imported.
    """
    ckpt_path, run_dir = runs.locate(path, rundir.LAST)
    state = checkpoint.load(ckpt_path)
    try:
        config = RunConfig.from_dict(state["config"])
    except TorchdeckError as exc:
        raise CheckpointError(f"{ckpt_path} holds a config this torchdeck cannot use: {exc}") from None
    if not trust.references(config):  # the weights must fit the config; the user's code is not run for it
        saved.build(ckpt_path, config, state, shapes_only=True)
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
        "file_size": ckpt_path.stat().st_size,
        "files": files,
        "versions": state.get("versions", {}),
        "saved_at": state.get("saved_at"),
    }
