"""What a model catalog entry is, and the input an image model needs: shared by the catalog
(engine.train.models) and torchvision's models (engine.train.vision)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from engine.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., nn.Module]
    images_only: bool = False  # convolutional models need (channels, height, width) inputs


def image_shape(model: str, config, input_shape: list[int], halvings: int) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image input that survives ``halvings`` poolings.

    Image models cannot take table rows, and a side under ``2 ** halvings`` pixels would shrink
    to nothing; both are the user's choice of model and task, so they are a ConfigError.
    """
    least = 2**halvings
    if len(input_shape) != 3 or min(input_shape[1:]) < least:
        raise ConfigError(
            f"model: {model} needs image inputs (channels x height x width, at least {least}x{least} "
            f"pixels), but task '{config.task}' gives inputs of shape {list(input_shape)}; choose an image "
            f"task or the mlp model", option="model",
        )
    return tuple(input_shape)
