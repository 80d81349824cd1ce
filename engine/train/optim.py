"""Optimizer and learning-rate scheduler catalogs.

Every optimizer updates all its parameters at once: ``fused=True`` where PyTorch has a fused
kernel (Adam, AdamW and SGD on the CPU and CUDA), ``foreach=True`` otherwise. PyTorch's own default
on the CPU is a Python loop over the parameter tensors, which costs a tiny model more than its
matrix products (bench/speed.py: the hand-written MNIST MLP loop runs 1.3-1.4x as fast with fused Adam).

A scheduler steps once an epoch. Resumed with another ``--epochs``, ``step`` and ``plateau`` go
on as they were (they do not depend on the total); ``cosine`` decays to 0 at the new last epoch
(see ``_cosine_retarget``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.optim import lr_scheduler

from engine.catalog import Catalog


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., torch.optim.Optimizer]


def _all_at_once(params, fusable: bool = True) -> tuple[list, dict]:
    """The parameters as a list, and the keyword that updates them in one kernel (or a few)."""
    params = list(params)
    devices = {p.device.type for p in params}
    if fusable and devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params):
        return params, {"fused": True}
    return params, {"foreach": True}


def _sgd(params, c) -> torch.optim.Optimizer:
    params, kernel = _all_at_once(params)
    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov,
                           weight_decay=c.weight_decay, **kernel)


def _adam(cls):
    def build(params, c) -> torch.optim.Optimizer:
        params, kernel = _all_at_once(params)
        return cls(params, lr=c.lr, weight_decay=c.weight_decay, **kernel)
    return build


def _rmsprop(params, c) -> torch.optim.Optimizer:
    params, kernel = _all_at_once(params, fusable=False)  # PyTorch has no fused RMSprop
    return torch.optim.RMSprop(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay, **kernel)


def _cosine_retarget(scheduler: lr_scheduler.CosineAnnealingLR, done: int, epochs: int) -> None:
    """Make a restored cosine schedule, ``done`` epochs into its run, reach 0 after epoch ``epochs``.

    Resumed with the total it was planned for, it is left as it is (an interrupted run goes on
    exactly). Resumed with another total, the decay goes on from the current rate over the
    epochs left: the rate never jumps and never rises. A finished schedule's current rate is 0,
    so there the decay starts again from the rate of the last epoch trained instead.
    """
    left = epochs - done
    if scheduler.T_max - scheduler.last_epoch == left:
        return
    back = 0 if scheduler.T_max > scheduler.last_epoch else 1  # steps back to a rate above 0
    position = scheduler.last_epoch - back
    scheduler.base_lrs = [base * (1 + math.cos(math.pi * position / scheduler.T_max)) / 2
                          for base in scheduler.base_lrs]
    scheduler.T_max, scheduler.last_epoch = left + back, back
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * (1 + math.cos(math.pi * back / scheduler.T_max)) / 2
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., object | None]
    needs_metric: bool = False
    # (scheduler, epochs done, epochs in all): fit a restored scheduler to a resumed run's total
    retarget: Callable[[Any, int, int], None] = lambda scheduler, done, epochs: None


OPTIMIZERS: Catalog[OptimizerSpec] = Catalog(
    "optimizer",
    [
        OptimizerSpec(
            "sgd", "stochastic gradient descent, optional (Nesterov) momentum",
            ("lr", "momentum", "nesterov", "weight_decay"), _sgd,
        ),
        OptimizerSpec(
            "adam", "adaptive moments: a robust default", ("lr", "weight_decay"), _adam(torch.optim.Adam),
        ),
        OptimizerSpec(
            "adamw", "Adam with decoupled weight decay", ("lr", "weight_decay"), _adam(torch.optim.AdamW),
        ),
        OptimizerSpec(
            "rmsprop", "running average of squared gradients",
            ("lr", "momentum", "weight_decay"), _rmsprop,
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
            "cosine", "cosine decay from lr to 0 over the run's epochs (resumed with more "
            "--epochs: from the current rate to 0 over the epochs left)", (),
            lambda opt, c: lr_scheduler.CosineAnnealingLR(opt, T_max=c.epochs), retarget=_cosine_retarget,
        ),
        SchedulerSpec(
            "plateau", "multiply the rate by gamma when validation loss stalls",
            ("gamma", "scheduler_patience"),
            lambda opt, c: lr_scheduler.ReduceLROnPlateau(opt, factor=c.gamma, patience=c.scheduler_patience),
            needs_metric=True,
        ),
    ],
)
