"""A saved run, loaded for use: the start of inspect, evaluate, predict and export.

A checkpoint holds everything needed: the model is rebuilt from the catalog (or the user's own
code, as engine.store.trust allows) by the checkpoint's config and given its weights, and the task's metadata carries the scaler fitted at
training time, so nothing of the original process or data is required.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from engine.config import RunConfig
from engine.data.meta import TaskMeta
from engine.errors import CheckpointError, TorchdeckError
from engine.store import checkpoint, rundir, runs, trust
from engine.text import first_line
from engine.train import memory
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


def load(path: str | Path, prefer: str = rundir.BEST, code: Iterable[str | Path] = ()) -> SavedRun:
    """Load the run at ``path``; a run directory gives its ``best.pt`` unless ``prefer`` says otherwise.

    A model of the user's own code is built by importing that code again, only as
    engine.store.trust allows; ``code``: files the user says hold it now (``--code``).
    """
    ckpt_path, run_dir = runs.locate(path, prefer)
    state = checkpoint.load(ckpt_path)
    try:
        config = RunConfig.from_dict(state["config"])
    except TorchdeckError as exc:
        raise CheckpointError(f"{ckpt_path} holds a config this torchdeck cannot use: {exc}") from None
    config = trust.admit(config, code)
    meta, model = build(ckpt_path, config, state)
    model.eval()
    return SavedRun(ckpt_path, run_dir, state, config, meta, model)


def build(ckpt_path: Path, config: RunConfig, state: dict[str, Any],
          shapes_only: bool = False) -> tuple[TaskMeta, torch.nn.Module]:
    """The checkpoint's task metadata and model with its weights, or one CheckpointError saying
    why they do not go together. ``shapes_only``: the model is built on the meta device (no
    memory, whatever its size) and given the checkpoint's own tensors, just to check they fit."""
    try:
        meta = TaskMeta.from_dict(state["task"])
        memory.check(config, torch.device("cpu"), meta, training=False)  # a config can ask for any size
        with torch.device("meta" if shapes_only else "cpu"):
            model = build_model(config.replace(weights=None), meta)  # the checkpoint holds the weights
        model.load_state_dict(state["model"], assign=shapes_only)
    except TorchdeckError as exc:
        raise CheckpointError(f"{ckpt_path} holds a config this torchdeck cannot use: {exc}") from None
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{ckpt_path} is incomplete or does not fit its config ({first_line(exc)})") from None
    return meta, model
