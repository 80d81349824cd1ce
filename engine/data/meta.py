"""What a task is (its spec in the catalog) and what a trained model expects of its inputs.

``TaskMeta`` travels with every checkpoint, so the storage and use layers import this module
alone, not the loaders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

if TYPE_CHECKING:
    from engine.data.split import TaskData


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
    load: Callable[[Any], RawData] | None
    preset: dict[str, Any]
    source: str = "scikit-learn (offline)"
    scale_target: bool = False
    reads_data_dir: bool = False
    image_set: str | None = None  # a name in engine.data.images.IMAGE_SETS for image tasks
    normalize: tuple[float, float] | None = None  # fixed (mean, std) for images; None: from train
    inputs: str = "table"  # table | images | any (a user's data set, whose inputs its data decides): which models fit
    prepare: Callable[..., "TaskData"] | None = None  # (spec, config, device, meta) -> TaskData, for
    # tasks whose data is not a plain table (images, a user's CSV); None: the scikit-learn path


@dataclass
class TaskMeta:
    """What a trained model expects of its inputs and how to read its outputs."""

    task: str
    kind: str
    input_shape: list[int]
    feature_names: list[str]
    class_names: list[str]
    x_mean: torch.Tensor  # per feature; per channel (C, 1, 1) for images
    x_scale: torch.Tensor
    y_mean: float = 0.0
    y_scale: float = 1.0
    image_mode: str | None = None  # PIL mode of image inputs: "L" or "RGB"; None for tables
    # A user's table (csv task): per input column its name, type, fill value and categories, as
    # plain data (see engine.data.tables); None for inputs that are numbers only.
    columns: list[dict[str, Any]] | None = None

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
            "image_mode": self.image_mode,
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TaskMeta":
        return cls(**data)

    def scale_inputs(self, x: np.ndarray) -> torch.Tensor:
        """Raw feature rows to the standardised tensor the model was trained on."""
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        return (x - self.x_mean) / self.x_scale

    def scale_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) to the normalised floats the model was trained on."""
        return (images.float().div_(255) - self.x_mean) / self.x_scale

    def unscale_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Model outputs of a regression back to the target's own units."""
        return y * self.y_scale + self.y_mean


