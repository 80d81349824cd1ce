"""The task catalog: data sets, their kind, their preset, and how they become tensors.

A task loads raw arrays (features and targets); :func:`load_task` splits them with a fixed
seed (stratified for classification), fits a StandardScaler on the training split only, and
puts every split on the device as tensors so that batches are cut by index with no DataLoader.
What preprocessing a trained model expects travels with its checkpoint as a :class:`TaskMeta`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from engine.catalog import Catalog
from engine.errors import DataError

# The split never depends on the run's seed: runs with different seeds are judged on the same
# validation and test samples.
SPLIT_SEED = 42


@dataclass(frozen=True)
class RawData:
    """A whole data set before splitting: features (n, d) and targets (n,)."""

    x: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    class_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    kind: str  # regression | binary | multiclass
    load: Callable[[Any], RawData]
    preset: dict[str, Any]
    source: str = "scikit-learn (offline)"
    scale_target: bool = False
    reads_data_dir: bool = False


@dataclass
class TaskMeta:
    """What a trained model expects of its inputs and how to read its outputs."""

    task: str
    kind: str
    input_shape: list[int]
    feature_names: list[str]
    class_names: list[str]
    x_mean: torch.Tensor
    x_scale: torch.Tensor
    y_mean: float = 0.0
    y_scale: float = 1.0

    @property
    def outputs(self) -> int:
        return len(self.class_names) if self.kind == "multiclass" else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint (tensors on the CPU, floats not numpy scalars)."""
        return {
            "task": self.task,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "feature_names": list(self.feature_names),
            "class_names": list(self.class_names),
            "x_mean": self.x_mean.detach().cpu(),
            "x_scale": self.x_scale.detach().cpu(),
            "y_mean": float(self.y_mean),
            "y_scale": float(self.y_scale),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskMeta":
        return cls(**data)

    def scale_inputs(self, x: np.ndarray) -> torch.Tensor:
        """Raw feature rows to the standardised tensor the model was trained on."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return (x - self.x_mean) / self.x_scale

    def unscale_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Model outputs of a regression back to the target's own units."""
        return y * self.y_scale + self.y_mean


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass
class TaskData:
    meta: TaskMeta
    splits: dict[str, Split]

    def sizes(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}


def _sklearn(loader: Callable) -> Callable[[Any], RawData]:
    def load(config) -> RawData:
        bunch = loader()
        names = [str(n) for n in getattr(bunch, "target_names", [])]
        return RawData(bunch.data.astype(np.float32), bunch.target, list(map(str, bunch.feature_names)), names)

    return load


def _linear(config) -> RawData:
    """Seed 000's synthetic regression: x ~ N(0, 1), y = 2x + 1 + 0.1 noise, 1000 samples."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 1)).astype(np.float32)
    y = 2 * x[:, 0] + 1 + 0.1 * rng.standard_normal(1000).astype(np.float32)
    return RawData(x, y, ["x"])


TASKS: Catalog[TaskSpec] = Catalog(
    "task",
    [
        TaskSpec(
            "iris", "Iris flowers: 150 samples, 4 measurements, 3 species (tutorial preset)", "multiclass",
            _sklearn(datasets.load_iris),
            dict(model="mlp", hidden=[16, 8], activation="relu", dropout=0.2, optimizer="adam",
                 lr=0.01, scheduler="step", step_size=30, gamma=0.1, batch_size=16, epochs=100),
        ),
        TaskSpec(
            "breast-cancer", "Breast cancer diagnosis: 569 samples, 30 features, binary (tutorial preset)",
            "binary", _sklearn(datasets.load_breast_cancer),
            dict(model="mlp", hidden=[64, 32], activation="relu", optimizer="adam", lr=1e-3,
                 batch_size=32, epochs=100),
        ),
        TaskSpec(
            "linear", "Synthetic line y = 2x + 1 + noise: 1000 samples (tutorial preset)", "regression",
            _linear,
            dict(model="mlp", hidden=[32, 32], activation="relu", optimizer="adam", lr=1e-3,
                 batch_size=32, epochs=50),
            source="generated",
        ),
        TaskSpec(
            "wine", "Wine cultivars: 178 samples, 13 chemical features, 3 classes", "multiclass",
            _sklearn(datasets.load_wine),
            dict(model="mlp", hidden=[32, 16], activation="relu", dropout=0.1, optimizer="adam",
                 lr=0.01, scheduler="step", step_size=30, gamma=0.1, batch_size=16, epochs=60),
        ),
        TaskSpec(
            "digits", "Handwritten digits: 1797 images of 8x8 pixels, 10 classes", "multiclass",
            _sklearn(datasets.load_digits),
            dict(model="mlp", hidden=[128, 64], activation="relu", dropout=0.1, optimizer="adam",
                 lr=1e-3, scheduler="cosine", batch_size=64, epochs=40),
        ),
        TaskSpec(
            "diabetes", "Diabetes progression: 442 patients, 10 features, regression", "regression",
            _sklearn(datasets.load_diabetes),
            dict(model="mlp", hidden=[64, 32], activation="relu", dropout=0.1, optimizer="adamw",
                 lr=1e-3, weight_decay=1e-2, batch_size=32, epochs=200, patience=30),
            scale_target=True,
        ),
    ],
)


def load_task(config, device: torch.device | str = "cpu", meta: TaskMeta | None = None) -> TaskData:
    """The task's train/val/test splits as tensors on ``device``.

    With ``meta`` (from a checkpoint) the stored scaler is applied instead of a new one being
    fitted, so evaluation sees exactly the inputs training saw.
    """
    spec = TASKS.entry(config.task, "task")
    raw = spec.load(config)
    if len(raw.x) < 10:
        raise DataError(f"task '{spec.name}' has only {len(raw.x)} samples; at least 10 are needed")
    train, val, test = _split(spec, raw, config)
    if meta is None:
        meta = _fit_meta(spec, raw, train)
    x_all = meta.scale_inputs(raw.x)
    if spec.kind != "regression":
        y_all = torch.as_tensor(raw.y, dtype=torch.long)
        if spec.kind == "binary":
            y_all = y_all.float().unsqueeze(1)
    else:
        y_all = (torch.as_tensor(raw.y, dtype=torch.float32).unsqueeze(1) - meta.y_mean) / meta.y_scale
    splits = {
        name: Split(x_all[torch.as_tensor(rows)].to(device), y_all[torch.as_tensor(rows)].to(device))
        for name, rows in (("train", train), ("val", val), ("test", test))
    }
    return TaskData(meta, splits)


def _split(spec: TaskSpec, raw: RawData, config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/val/test row indices: a fixed seed, stratified by class for classification."""
    classify = spec.kind != "regression"
    least = len(np.unique(raw.y)) if classify else 2  # every class in every split; R² needs 2 samples
    for option, share in (("val_fraction", config.val_fraction), ("test_fraction", config.test_fraction)):
        if round(share * len(raw.x)) < least:
            raise DataError(
                f"{option}: {share} of {len(raw.x)} samples is fewer than the {least} that task '{spec.name}' "
                f"needs in that split; use a larger fraction"
            )
    index = np.arange(len(raw.x))
    rest, test = train_test_split(
        index, test_size=config.test_fraction, random_state=SPLIT_SEED, stratify=raw.y if classify else None
    )
    train, val = train_test_split(
        rest, test_size=config.val_fraction / (1 - config.test_fraction), random_state=SPLIT_SEED,
        stratify=raw.y[rest] if classify else None,
    )
    return train, val, test


def _fit_meta(spec: TaskSpec, raw: RawData, train: np.ndarray) -> TaskMeta:
    scaler = StandardScaler().fit(raw.x[train])
    y_mean, y_scale = 0.0, 1.0
    if spec.scale_target:
        target = StandardScaler().fit(raw.y[train].reshape(-1, 1))
        y_mean, y_scale = float(target.mean_[0]), float(target.scale_[0])
    class_names = raw.class_names
    if spec.kind != "regression" and not class_names:
        class_names = [str(c) for c in np.unique(raw.y)]
    return TaskMeta(
        task=spec.name,
        kind=spec.kind,
        input_shape=[raw.x.shape[1]],
        feature_names=raw.feature_names,
        class_names=class_names,
        x_mean=torch.as_tensor(scaler.mean_, dtype=torch.float32),
        x_scale=torch.as_tensor(scaler.scale_, dtype=torch.float32),
        y_mean=y_mean,
        y_scale=y_scale,
    )
