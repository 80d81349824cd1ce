"""What ``inspect`` and the browser's details show about a saved run.

The checkpoint says what was trained and how far; the run directory beside it (when there is
one) says why the run stopped or failed, which a checkpoint written before the end cannot know.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.store import rundir, runs
from engine.use.saved import load


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
    about = (runs.summary(saved.run_dir) if saved.run_dir else None) or {}  # why it stopped or failed
    return {
        "path": str(saved.path),
        "run_dir": str(saved.run_dir) if saved.run_dir else None,
        "status": runs.status(saved.run_dir) if saved.run_dir else None,
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
