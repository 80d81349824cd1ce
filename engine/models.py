"""The model catalog: architectures built by name from a config and the task's shapes.

Models are always rebuilt from the catalog by name and options (never unpickled), so a
checkpoint holds only their ``state_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from engine.catalog import Catalog


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., nn.Module]


@dataclass(frozen=True)
class Activation:
    name: str
    description: str
    make: Callable[[], nn.Module]


ACTIVATIONS: Catalog[Activation] = Catalog(
    "activation",
    [
        Activation("relu", "max(0, x): the usual default", nn.ReLU),
        Activation("tanh", "hyperbolic tangent, outputs in (-1, 1)", nn.Tanh),
        Activation("sigmoid", "logistic function, outputs in (0, 1)", nn.Sigmoid),
        Activation("gelu", "Gaussian error linear unit (transformers)", nn.GELU),
    ],
)


def _linear(config, inputs: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, outputs))


def _mlp(config, inputs: int, outputs: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = inputs
    for size in config.hidden:
        layers.append(nn.Linear(width, size))
        if config.batch_norm:
            layers.append(nn.BatchNorm1d(size))
        layers.append(ACTIVATIONS[config.activation].make())
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        width = size
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


MODELS: Catalog[ModelSpec] = Catalog(
    "model",
    [
        ModelSpec("linear", "one linear layer: linear or logistic regression", (), _linear),
        ModelSpec(
            "mlp", "multi-layer perceptron: linear layers with activations",
            ("hidden", "activation", "dropout", "batch_norm"), _mlp,
        ),
    ],
)


def build_model(config, meta) -> nn.Module:
    """The config's model, sized for the task described by ``meta``."""
    inputs = 1
    for dim in meta.input_shape:
        inputs *= dim
    return MODELS.entry(config.model, "model").build(config, inputs, meta.outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
