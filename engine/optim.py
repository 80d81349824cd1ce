"""Optimizer and learning-rate scheduler catalogs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.optim import lr_scheduler

from engine.catalog import Catalog


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., torch.optim.Optimizer]


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., object | None]
    needs_metric: bool = False


OPTIMIZERS: Catalog[OptimizerSpec] = Catalog(
    "optimizer",
    [
        OptimizerSpec(
            "sgd", "stochastic gradient descent, optional (Nesterov) momentum",
            ("lr", "momentum", "nesterov", "weight_decay"),
            lambda params, c: torch.optim.SGD(
                params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay
            ),
        ),
        OptimizerSpec(
            "adam", "adaptive moments: a robust default", ("lr", "weight_decay"),
            lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
        ),
        OptimizerSpec(
            "adamw", "Adam with decoupled weight decay", ("lr", "weight_decay"),
            lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
        ),
        OptimizerSpec(
            "rmsprop", "running average of squared gradients",
            ("lr", "momentum", "weight_decay"),
            lambda params, c: torch.optim.RMSprop(
                params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
            ),
        ),
    ],
)

SCHEDULERS: Catalog[SchedulerSpec] = Catalog(
    "scheduler",
    [
        SchedulerSpec("none", "constant learning rate", (), lambda opt, c: None),
        SchedulerSpec(
            "step", "multiply the rate by gamma every step_size epochs", ("step_size", "gamma"),
            lambda opt, c: lr_scheduler.StepLR(opt, step_size=c.step_size, gamma=c.gamma),
        ),
        SchedulerSpec(
            "cosine", "cosine decay from lr to 0 over the run's epochs", (),
            lambda opt, c: lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs),
        ),
        SchedulerSpec(
            "plateau", "multiply the rate by gamma when validation loss stalls",
            ("gamma", "scheduler_patience"),
            lambda opt, c: lr_scheduler.ReduceLROnPlateau(opt, factor=c.gamma, patience=c.scheduler_patience),
            needs_metric=True,
        ),
    ],
)
