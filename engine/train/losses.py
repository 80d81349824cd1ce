"""The loss catalog; ``auto`` picks the loss that fits the task kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from engine.catalog import Catalog


@dataclass(frozen=True)
class LossSpec:
    name: str
    description: str
    kinds: tuple[str, ...]
    make: Callable[[], nn.Module]


LOSSES: Catalog[LossSpec] = Catalog(
    "loss",
    [
        LossSpec("cross-entropy", "multi-class classification on logits", ("multiclass",), nn.CrossEntropyLoss),
        LossSpec("bce-with-logits", "binary classification on one logit", ("binary",), nn.BCEWithLogitsLoss),
        LossSpec("mse", "mean squared error", ("regression",), nn.MSELoss),
        LossSpec("l1", "mean absolute error, robust to outliers", ("regression",), nn.L1Loss),
        LossSpec("huber", "squared near zero, absolute far out", ("regression",), nn.HuberLoss),
    ],
)

AUTO = {"multiclass": "cross-entropy", "binary": "bce-with-logits", "regression": "mse"}


def loss_name(config, kind: str) -> str:
    return AUTO[kind] if config.loss == "auto" else config.loss


def build_loss(config, kind: str) -> nn.Module:
    return LOSSES[loss_name(config, kind)].make()
