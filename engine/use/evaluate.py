"""Judging a saved run on one of its task's splits.

The split is rebuilt with the fixed split seed and scaled with the statistics stored at training
time, so ``evaluate`` sees exactly the samples and inputs the run was validated and tested on.
"""

from __future__ import annotations

from typing import Any

from sklearn import metrics as skm

from engine.data.tasks import load_task
from engine.train.losses import build_loss
from engine.train.metrics import compute, labels, predict_classes
from engine.use.saved import SavedRun


def evaluate(saved: SavedRun, split: str = "test") -> dict[str, Any]:
    """Loss and metrics on a split; for classifiers also the confusion matrix and report."""
    data = load_task(saved.config, "cpu", saved.meta).splits[split]
    outputs = data.outputs(saved.model)
    kind = saved.meta.kind
    result: dict[str, Any] = {
        "path": str(saved.path),
        "split": split,
        "samples": len(data),
        "loss": float(build_loss(saved.config, kind)(outputs, data.y)),
        "metrics": compute(kind, outputs, data.y, saved.meta),
    }
    if kind != "regression":
        names = saved.meta.class_names
        truth, guess = labels(kind, data.y), predict_classes(kind, outputs).numpy()
        every = list(range(len(names)))
        result["classes"] = names
        result["confusion_matrix"] = skm.confusion_matrix(truth, guess, labels=every).tolist()
        result["report"] = skm.classification_report(
            truth, guess, labels=every, target_names=names, output_dict=True, zero_division=0
        )
    return result
