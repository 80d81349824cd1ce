"""Early stopping: stop when the monitored value has not improved for ``patience`` epochs.

The record it keeps (the best epoch and the epochs since) travels in a checkpoint's train state
as its ``best`` and ``bad_epochs`` fields, so a resumed run goes on counting where it left off.
"""

from __future__ import annotations

from typing import Any

from engine.config import HIGHER_IS_BETTER


class EarlyStopping:
    """The best epoch of ``monitor`` so far and how many epochs since were no better."""

    def __init__(self, monitor: str, patience: int, min_delta: float) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.best: dict[str, Any] = {}
        self.bad_epochs = 0

    @property
    def exhausted(self) -> bool:
        """The patience has run out: training should stop."""
        return self.patience > 0 and self.bad_epochs >= self.patience

    def update(self, epoch: int, value: float, val_loss: float) -> tuple[bool, bool, str]:
        """(improved, stop, reason) after ``epoch`` (counted from 1), whose monitored value is ``value``."""
        improved = self._improves(value, val_loss)
        if improved:
            self.best = {"epoch": epoch, "monitor": self.monitor, "value": value, "val_loss": val_loss}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if not self.exhausted:
            return improved, False, ""
        return improved, True, (f"early stopping: {self.monitor} has not improved for {self.patience} epochs "
                                f"(best {self.best['value']:.4f} at epoch {self.best['epoch']})")

    def _improves(self, value: float, val_loss: float) -> bool:
        best = self.best
        if not best:
            return True
        gain = value - best["value"] if self.monitor in HIGHER_IS_BETTER else best["value"] - value
        if gain > self.min_delta:
            return True
        # Equal accuracy (common on small validation sets): a lower loss still counts as better.
        return self.monitor != "val_loss" and gain == 0 and val_loss < best["val_loss"]

    def state_dict(self) -> dict[str, Any]:
        """The record as a train state holds it (``best`` is a new dict each time it changes)."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, train_state: dict[str, Any]) -> None:
        """Take up the record of a checkpoint's train state (its ``best`` and ``bad_epochs``)."""
        self.best, self.bad_epochs = dict(train_state["best"]), train_state["bad_epochs"]
