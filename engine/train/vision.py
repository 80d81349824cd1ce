"""Every torchvision classification model by name: ``--model mobilenet_v3_small``.

torchvision's builders make ImageNet models (3 channels, 1000 classes, some for one image size);
here each is built without downloading anything (``weights=None``), sized to the task's channels
and classes, checked against the task's image size in one line, and optionally started from a
local weights file and frozen but for its head.
"""

from __future__ import annotations

import functools
import itertools

import torch
from torch import nn

from engine.errors import CheckpointError, ConfigError
from engine.store.modelfiles import open_file
from engine.text import first_line, plural, printable
from engine.train.modelspec import ModelSpec, image_shape

# Built without their auxiliary classifiers (training returns plain logits); the keys of those
# classifiers in a torchvision weights file are left out when loading it.
_AUX = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


@functools.cache
def names() -> tuple[str, ...]:
    """The classification models (not detection, segmentation, video or quantized ones)."""
    import torchvision  # costs a second: only when a name beyond the listed models is asked for

    return tuple(torchvision.models.list_models(module=torchvision.models))


def spec(name: str):
    """The ModelSpec of torchvision's ``name``; None for a name torchvision does not have."""
    if not isinstance(name, str) or name not in names():
        return None
    return ModelSpec(name, f"torchvision {name} (from scratch, or fine-tuned from --weights)",
                     ("weights", "strip_prefix", "freeze"), functools.partial(build, name), images_only=True)


def build(name: str, config, input_shape: list[int], outputs: int) -> nn.Module:
    """torchvision's ``name`` for the task's channels and classes, its size checked, from ``config.weights``."""
    channels, height, width = image_shape(name, config, input_shape, halvings=0)
    model = _construct(name, outputs)
    if channels != 3:
        replace_stem(model, channels)
    _check_size(name, model, [channels, height, width])
    if config.weights:
        load_weights(model, config.weights, " (the first convolution takes the task's channels)", _AUX.get(name, ()),
                     config.strip_prefix)
    if config.freeze:
        freeze(model)
    return model


def _construct(name: str, outputs: int) -> nn.Module:
    """The model on the default device; regnets compute their widths with tensors, which the meta
    device (the memory estimate's) cannot read back, so those are built on the CPU and moved."""
    import torchvision

    options = {"aux_logits": False, "init_weights": True} if name in _AUX else {}
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=outputs, **options)
    except NotImplementedError:
        if torch.get_default_device().type != "meta":
            raise
        with torch.device("cpu"):
            return torchvision.models.get_model(name, weights=None, num_classes=outputs, **options).to("meta")


def replace_stem(model: nn.Module, channels: int) -> None:
    """The first convolution (the stem, first in module order in every torchvision classifier)
    remade for ``channels`` inputs, keeping its kernel, stride, padding, dilation and bias."""
    name, conv = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d))
    parent, _, attribute = name.rpartition(".")
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    1, conv.bias is not None, conv.padding_mode, device=conv.weight.device)
    setattr(model.get_submodule(parent) if parent else model, attribute, new)


def _check_size(name: str, model: nn.Module, shape: list[int]) -> None:
    """One image on the meta device through the model: a size it cannot take (a ViT's fixed 224,
    a MaxViT's windows, an AlexNet's pooling) is one line naming --image-size, not a traceback."""
    state = {k: v.to("meta") for k, v in itertools.chain(model.named_parameters(), model.named_buffers())}
    training = model.training
    try:
        with torch.no_grad():
            torch.func.functional_call(model.eval(), state, (torch.empty(1, *shape, device="meta"),))
    except (RuntimeError, AssertionError, ValueError) as exc:
        import torchvision

        side = max(torchvision.models.get_model_weights(name).DEFAULT.meta["min_size"])
        raise ConfigError(
            f"model: {name} cannot take {'x'.join(map(str, shape))} images ({first_line(exc)}); "
            f"try --image-size {max(side, 224) if side >= 224 else side} with an image folder, or another model",
            option="image_size",
        ) from None
    finally:
        model.train(training)


def head(model: nn.Module) -> tuple[str, nn.Module]:
    """The classification head: the last nn.Linear in module order, or for a model without one
    (squeezenet) its last convolution."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    layers = layers or [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return layers[-1]


def freeze(model: nn.Module) -> None:
    """Every parameter but the head's stops learning (requires_grad=False). BatchNorm layers keep
    their frozen scale and shift, but in training mode they still update their running mean and
    variance from the task's batches, as torchvision's models do when fine-tuned this way."""
    kept = {id(p) for p in head(model)[1].parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in kept)


def load_weights(model: nn.Module, path: str, note: str = "", ignored: tuple[str, ...] = (),
                 strip_prefix: str | None = None) -> None:
    """Load the state dict in ``path`` into ``model``, keeping the fresh head (:func:`head`) where
    the file's is of another shape (fine-tuning on a task with other classes). ``note`` ends the
    message for a stem of another shape; keys starting with one of ``ignored`` are left out (the
    auxiliary classifiers torchvision's files hold for a model built without them), and
    ``strip_prefix`` is taken off the keys that start with it (``module.`` of a DataParallel)."""
    state = {k.removeprefix(strip_prefix or ""): v for k, v in _read_state_dict(path).items()}
    state = {k: v for k, v in state.items() if not k.startswith(ignored or ("\0",))}
    own = model.state_dict()
    prefix = head(model)[0] + "."
    for key, tensor in state.items():
        _check_tensor(path, key, tensor, own.get(key))
        if key in own and tensor.shape != own[key].shape and not key.startswith(prefix):
            raise ConfigError(
                f"weights: {path} does not fit this model: {key} has shape {list(tensor.shape)}, "
                f"the model's has {list(own[key].shape)}{note}", option="weights",
            )
    skipped = {key for key in own if key.startswith(prefix) and key in state and state[key].shape != own[key].shape}
    result = model.load_state_dict({k: v for k, v in state.items() if k not in skipped}, strict=False)
    missing = [key for key in result.missing_keys if key not in skipped]
    if missing or result.unexpected_keys:
        raise ConfigError(f"weights: {path} does not fit this model: {_misfit(missing, result.unexpected_keys, own)}",
                          option="weights")


def _misfit(missing: list[str], unexpected: list[str], own: dict) -> str:
    """Every key that does not fit, at once, and the prefix to strip when the file's keys are
    the model's under a wrapper's name (``module.``, ``model.``)."""
    parts = [f"it lacks {_keys(missing)}"] if missing else []
    parts += [f"the model has no {_keys(unexpected)}"] if unexpected else []
    first = unexpected[0] if unexpected else ""
    for end in (i + 1 for i, char in enumerate(first) if char == "."):
        if all(key.startswith(first[:end]) and key[end:] in own for key in unexpected):
            parts.append(f"try --strip-prefix {printable(first[:end])}")
            break
    return "; ".join(parts)


def _keys(keys: list[str], shown: int = 10) -> str:
    """``a, b, c (3 keys)``: the first ``shown`` of them named, all of them counted."""
    more = ", …" if len(keys) > shown else ""
    return f"{printable(', '.join(keys[:shown]))}{more} ({plural(len(keys), 'key')})"


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
    """The model's weights in ``path``, read without running anything (engine.store.modelfiles):
    a plain state dict (``torch.save(model.state_dict())``, torchvision's weight files: this model
    is torchvision's, so their keys match), one at any depth of a training checkpoint (``model``,
    ``state_dict``, ``model_state``, ...), or a safetensors file. A file that would build Python
    objects when loaded is refused, even where its tensors could be read without loading it."""
    try:
        found = open_file(path)
        if found.globals:
            raise CheckpointError(f"{path} was refused: loading it would run or build Python objects "
                                  f"({printable(', '.join(found.globals[:8]))}); torchdeck only reads plain data")
        if not found.tensors:
            raise CheckpointError(f"{path} holds no state dict (a mapping of names to tensors)")
        unread = [name for name, tensor in found.tensors.items() if tensor.read is None]
        if unread:
            raise CheckpointError(f"{path}: the values of {printable(unread[0])} are not in the file")
        return {name: tensor.read() for name, tensor in found.tensors.items()}
    except CheckpointError as exc:
        raise ConfigError(f"weights: {exc}", option="weights") from None
