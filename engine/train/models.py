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

from torch import nn

from engine import usercode
from engine.catalog import Catalog
from engine.errors import ConfigError
from engine.train import vision
from engine.train.modelspec import ModelSpec, image_shape


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
    channels, height, width = image_shape("cnn", config, input_shape, halvings=2)
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
    channels, height, width = image_shape("convnet", config, input_shape, halvings=4)
    sizes = (channels, 32, 64, 128, 256, 256)
    layers = []
    for index in range(5):
        layers += _conv(sizes[index], sizes[index + 1], nn.ReLU(), pool=index < 4)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(256 * (height // 16) * (width // 16), outputs))


def _resnet18(config, input_shape: list[int], outputs: int) -> nn.Module:
    """torchvision's ResNet-18 for the task's channels and classes, started from ``config.weights``.

    Images under 64x64 get the usual CIFAR stem (3x3 stride-1 conv1, no max-pool): the ImageNet
    stem would shrink a 32x32 image to 8x8 before the first residual block.
    """
    import torchvision  # here, not at the top: it costs a second and only this model needs it

    channels, height, width = image_shape("resnet18", config, input_shape, halvings=3)
    model = torchvision.models.resnet18(weights=None, num_classes=outputs)
    if min(height, width) < 64:
        model.conv1 = nn.Conv2d(channels, 64, 3, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif channels != 3:
        model.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    # torchvision's initialisation of conv1, kept for a replaced one
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    if config.weights:
        vision.load_weights(model, config.weights, " (conv1 is 3x3 for images under 64x64 and takes the task's channels)",
                            strip_prefix=config.strip_prefix)
    if config.freeze:
        vision.freeze(model)
    return model


def _own_model(config, input_shape: list[int], outputs: int) -> nn.Module:
    """The user's model (``--model FILE.py:NAME``): their class or factory called with
    ``--model-args`` and, for the parameters with a conventional name, the task's sizes."""
    ref = usercode.parse(config.model)
    target = usercode.load(ref, "model", (nn.Module,), "an nn.Module subclass or a function returning one")
    image = len(input_shape) == 3
    task = {
        "features": math.prod(input_shape),
        "input_shape": list(input_shape),
        "channels": input_shape[0] if image else None,
        "image_size": input_shape[1] if image and input_shape[1] == input_shape[2] else None,
        "outputs": outputs,
    }
    model = usercode.call(target, dict(config.model_args), task, "model")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model: {ref} returned {type(model).__name__}, not an nn.Module", option="model")
    return model


def _more_models(name: str) -> ModelSpec | None:
    """A model beyond the listed ones: the user's own (a reference) or a torchvision classifier."""
    ref = usercode.parse(name)
    if ref is not None:
        return ModelSpec(name, f"your own model {ref.name} from {ref.source}", ("model_args",), _own_model)
    return vision.spec(name)  # torchvision's list costs a second: read only for a name not listed here


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
            ("weights", "strip_prefix", "freeze"), _resnet18, images_only=True,
        ),
    ],
    _more_models,
)


def build_model(config, meta) -> nn.Module:
    """The config's model, sized for the task described by ``meta``."""
    return MODELS.entry(config.model, "model").build(config, list(meta.input_shape), meta.outputs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
