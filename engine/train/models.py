"""The model catalog: architectures built by name from a config and the task's input shape.

Models are always rebuilt from the catalog by name and options (never unpickled), so a
checkpoint holds only their ``state_dict``. A builder gets the input shape of one sample
(``[features]`` for a table, ``[channels, height, width]`` for images) and the number of
outputs; the image models refuse any other shape with a :class:`ConfigError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from engine.catalog import Catalog
from engine.errors import CheckpointError, ConfigError
from engine.store import checkpoint


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    options: tuple[str, ...]
    build: Callable[..., nn.Module]
    images_only: bool = False  # convolutional models need (channels, height, width) inputs


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


def _linear(config, input_shape: list[int], outputs: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), outputs))


def _mlp(config, input_shape: list[int], outputs: int) -> nn.Module:
    """Flatten, then per hidden size: Linear, BatchNorm1d?, activation, Dropout?; then the output layer."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
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


def _image(model: str, config, input_shape: list[int], halvings: int) -> tuple[int, int, int]:
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


def _conv(inputs: int, outputs: int, activation: nn.Module, batch_norm: bool = False,
          pool: bool = True) -> list[nn.Module]:
    """A 3x3 'same' convolution, BatchNorm2d?, the activation, and a 2x2 max-pool that halves the image."""
    layers = [nn.Conv2d(inputs, outputs, 3, padding=1)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(outputs))
    layers.append(activation)
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers


def _cnn(config, input_shape: list[int], outputs: int) -> nn.Module:
    """Two conv blocks (32 and 64 channels, each halving the image), then the mlp's head.

    The head is exactly the mlp built on the flattened 64 x H/4 x W/4 feature map, so hidden,
    activation, dropout and batch_norm mean the same as for the mlp (the conv blocks use the
    same activation and batch norm); hidden=[128] gives the classic MNIST CNN.
    """
    channels, height, width = _image("cnn", config, input_shape, halvings=2)
    features = []
    for inputs, size in ((channels, 32), (32, 64)):
        features += _conv(inputs, size, ACTIVATIONS[config.activation].make(), config.batch_norm)
    return nn.Sequential(*features, *_mlp(config, [64, height // 4, width // 4], outputs))


def _convnet(config, input_shape: list[int], outputs: int) -> nn.Module:
    """The cats-vs-dogs tutorial's network: five 3x3 convolutions 32-64-128-256-256 with ReLU,
    a max-pool after the first four, and one linear layer on the flattened 256 x H/16 x W/16 map.

    The tutorial ends with a Sigmoid for BCELoss; torchdeck's binary loss is BCE-with-logits on
    the raw logit, which is the same model computed stably, so there is no Sigmoid here.
    """
    channels, height, width = _image("convnet", config, input_shape, halvings=4)
    sizes = (channels, 32, 64, 128, 256, 256)
    layers = []
    for index in range(5):
        layers += _conv(sizes[index], sizes[index + 1], nn.ReLU(), pool=index < 4)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * (height // 16) * (width // 16), outputs))


# The final layer: the only weights that may differ in shape from a file, because fine-tuning
# on a task with other classes replaces it.
_HEAD = ("fc.weight", "fc.bias")


def _resnet18(config, input_shape: list[int], outputs: int) -> nn.Module:
    """torchvision's ResNet-18 for the task's channels and classes, started from ``config.weights``.

    Images under 64x64 get the usual CIFAR stem (3x3 stride-1 conv1, no max-pool): the ImageNet
    stem would shrink a 32x32 image to 8x8 before the first residual block.
    """
    import torchvision  # here, not at the top: it costs a second and only this model needs it

    channels, height, width = _image("resnet18", config, input_shape, halvings=3)
    model = torchvision.models.resnet18(weights=None, num_classes=outputs)
    if min(height, width) < 64:
        model.conv1 = nn.Conv2d(channels, 64, 3, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    # torchvision's initialisation of conv1, kept for a replaced one
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if config.weights:
        _load_weights(model, config.weights)
    return model


def _load_weights(model: nn.Module, path: str) -> None:
    """Load the state dict in ``path`` into ``model``, keeping the fresh head if the file's does not fit."""
    state = _read_state_dict(path)
    own = model.state_dict()
    for key, tensor in state.items():
        _check_tensor(path, key, tensor, own.get(key))
        if key in own and tensor.shape != own[key].shape and key not in _HEAD:
            hint = ""
            if key == "conv1.weight":
                hint = " (conv1 is 3x3 for images under 64x64 and takes the task's channels)"
            raise ConfigError(
                f"weights: {path} does not fit this model: {key} has shape {list(tensor.shape)}, "
                f"the model's has {list(own[key].shape)}{hint}", option="weights",
            )
    skipped = {key for key in _HEAD if key in state and state[key].shape != own[key].shape}
    result = model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    missing = [key for key in result.missing_keys if key not in skipped]
    if missing or result.unexpected_keys:
        problem = f"it lacks {missing[0]}" if missing else f"the model has no {result.unexpected_keys[0]}"
        raise ConfigError(f"weights: {path} does not fit this model: {problem}", option="weights")


def _check_tensor(path: str, key: str, tensor: torch.Tensor, own: torch.Tensor | None) -> None:
    """Refuse a tensor that loading would fail on or quietly change: one stored sparse (or in
    any layout but the dense one), one without data (a meta tensor), or one of whole numbers,
    booleans, complex or quantized values where the model holds floating-point numbers."""
    problem = None
    if tensor.layout != torch.strided:
        problem = f"is a {str(tensor.layout).removeprefix('torch.')} tensor; a model's weights are dense (strided)"
    elif tensor.is_meta:
        problem = "holds no values (a tensor on the meta device)"
    elif own is not None and own.is_floating_point() and not tensor.is_floating_point():
        problem = f"holds {str(tensor.dtype).removeprefix('torch.')} values; the model's are floating point"
    if problem:
        raise ConfigError(f"weights: {path}: {key} {problem}", option="weights")


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """The tensors in ``path``, read with ``weights_only=True`` so a hostile file never runs code.

    Accepts a plain state dict (what ``torch.save(model.state_dict())`` writes and torchvision's
    weight files hold: this model is torchvision's, so their keys match) or one kept under
    ``model`` or ``state_dict`` (a torchdeck checkpoint, many training scripts' checkpoints).
    """
    try:
        data = checkpoint.read_safely(path)
    except CheckpointError as exc:
        raise ConfigError(f"weights: {exc}", option="weights") from None
    if isinstance(data, dict):
        data = data.get("model", data.get("state_dict", data))
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConfigError(f"weights: {path} holds no state dict (a mapping of names to tensors)", option="weights")
    return data


MODELS: Catalog[ModelSpec] = Catalog(
    "model",
    [
        ModelSpec("linear", "one linear layer: linear or logistic regression", (), _linear),
        ModelSpec(
            "mlp", "multi-layer perceptron: linear layers with activations",
            ("hidden", "activation", "dropout", "batch_norm"), _mlp,
        ),
        ModelSpec(
            "cnn", "small CNN for images such as 28x28 or 32x32: two conv blocks, then an mlp head",
            ("hidden", "activation", "dropout", "batch_norm"), _cnn, images_only=True,
        ),
        ModelSpec(
            "convnet", "the cats-vs-dogs tutorial's CNN: five convolutions, one linear layer (180x180)",
            (), _convnet, images_only=True,
        ),
        ModelSpec(
            "resnet18", "torchvision ResNet-18 for images, from scratch or fine-tuned from local weights",
            ("weights",), _resnet18, images_only=True,
        ),
    ],
)


def build_model(config, meta) -> nn.Module:
    """The config's model, sized for the task described by ``meta``."""
    return MODELS.entry(config.model, "model").build(config, list(meta.input_shape), meta.outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
