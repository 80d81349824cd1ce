"""Validation and test metrics, computed once per evaluation.

Regression metrics (and the evaluation reports of engine/use/evaluate.py) come from scikit-learn.
Accuracy is counted in torch, where the outputs are: scikit-learn's ``accuracy_score`` checks
what kind of labels it got before counting matches, which costs a noticeable share of a tiny
epoch (tests/engine/train/test_metrics.py checks that both agree).
"""

from __future__ import annotations

import numpy as np
import torch

REGRESSION = ("mae", "rmse", "r2")
CLASSIFICATION = ("accuracy",)


def metric_names(kind: str) -> list[str]:
    return list(REGRESSION if kind == "regression" else CLASSIFICATION)


def default_monitor(kind: str) -> str:
    """What ``monitor = auto`` watches: accuracy for classifiers, the loss for regression."""
    return "val_loss" if kind == "regression" else "accuracy"


def predict_classes(kind: str, outputs: torch.Tensor) -> torch.Tensor:
    if kind == "binary":
        return (outputs.reshape(-1) > 0).long()
    return outputs.argmax(dim=1)


def probabilities(kind: str, outputs: torch.Tensor) -> torch.Tensor:
    """Class probabilities (n, classes), also for a binary model's single logit."""
    if kind == "binary":
        positive = torch.sigmoid(outputs.reshape(-1, 1))
        return torch.cat([1 - positive, positive], dim=1)
    return torch.softmax(outputs, dim=1)


def labels(kind: str, targets: torch.Tensor) -> np.ndarray:
    return targets.reshape(-1).long().cpu().numpy() if kind == "binary" else targets.cpu().numpy()


def compute(kind: str, outputs: torch.Tensor, targets: torch.Tensor, meta) -> dict[str, float]:
    """The kind's metrics for model ``outputs`` against ``targets`` (regression in target units)."""
    if kind == "regression":
        # imported here: scikit-learn would cost a classifier's run a second of start-up
        from sklearn import metrics as skm

        truth = meta.unscale_targets(targets.float()).reshape(-1).cpu().numpy()
        guess = meta.unscale_targets(outputs.float()).reshape(-1).cpu().numpy()
        return {
            "mae": float(skm.mean_absolute_error(truth, guess)),
            "rmse": float(skm.root_mean_squared_error(truth, guess)),
            "r2": float(skm.r2_score(truth, guess)),
        }
    truth = targets.reshape(-1).long() if kind == "binary" else targets
    return {"accuracy": int((predict_classes(kind, outputs) == truth).sum()) / len(truth)}
