"""Will the model fit? An estimate of its memory, made before anything real is allocated.

A model too big for the machine does not fail in one line by itself: an allocation of more than
there is can take minutes of swapping and end with the kernel killing the process, no message.
So the model is first built on the ``meta`` device (shapes without storage: no memory, no time
for any size) and a batch of the same kind is passed through it, forward hooks summing what each
layer outputs. That works for any ``nn.Module``, whatever its layers. The estimate is then held
against what the device has free, and a run that cannot fit is refused in one line.

The estimate leaves out what PyTorch needs besides (kernels' workspaces, the allocator's slack),
so it errs low: a model refused here would not have fitted, and one that fits is never refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from engine import usercode
from engine.data.folders import DEFAULT_SIZE
from engine.data.tasks import TASKS
from engine.errors import ConfigError, TorchdeckError
from engine.text import size_text
from engine.train.models import MODELS, build_model

# Tensors of state per parameter tensor that each optimizer keeps (torch.optim's own): Adam's two
# moments, SGD's momentum buffer, RMSprop's squared average and, with momentum, its buffer.
_OPTIMIZER_STATES = {
    "adam": lambda config: 2,
    "adamw": lambda config: 2,
    "sgd": lambda config: 1 if config.momentum else 0,
    "rmsprop": lambda config: 2 if config.momentum else 1,
}
_LARGEST = 2**63  # torch counts a tensor's elements in a signed 64-bit number


class Inputs(NamedTuple):
    """What a model is built for: what ``build_model`` reads of a task's metadata."""

    input_shape: list[int]
    outputs: int


@dataclass(frozen=True)
class Estimate:
    """Bytes a model takes on its device: its parameters and buffers and, when it trains, their
    gradients and the optimizer's state, and the outputs of its layers for one batch (what a
    backward pass keeps; in use, only the largest layer's input and output are alive at once)."""

    parameters: int
    gradients: int
    optimizer: int
    activations: int

    @property
    def total(self) -> int:
        return self.parameters + self.gradients + self.optimizer + self.activations

    def __str__(self) -> str:
        parts = [("parameters", self.parameters), ("gradients", self.gradients), ("optimizer", self.optimizer),
                 ("activations of one batch", self.activations)]
        listed = ", ".join(f"{name} {size_text(size)}" for name, size in parts if size)
        return f"about {size_text(self.total)} ({listed})"


def check(config, device: torch.device, meta: Any = None, training: bool = True, advice: bool = True) -> None:
    """Refuse, in one ConfigError, a model that will not fit on ``device``.

    ``meta``: the task's metadata (a TaskMeta); without it, only what the config alone tells is
    checked: an image folder's ``image_size``, before any image is resized to it. ``training``:
    gradients and optimizer state count too (not for a saved model that is only used).
    ``advice``: end with the flags that make a run smaller (not for a resumed run: they are its
    checkpoint's).
    """
    inputs = meta if meta is not None else _inputs_before_loading(config)
    free = available(device) if inputs is not None else None
    if free is None:
        return
    try:
        need = estimate(config, inputs, training)
    except TorchdeckError:
        raise
    except Exception:
        if usercode.parse(config.model) is None:
            raise
        return  # the user's own code does what the meta device cannot (say, .item()): no estimate
    advice = f"; use {_advice(config)}" if training and advice else ""
    if need is None:
        raise ConfigError(f"the model needs more memory than any machine has: one batch or one of its tensors "
                          f"would hold over {_LARGEST:.1e} numbers{advice}")
    if need.total > free:
        raise ConfigError(f"the model needs {need} but {device.type} has {size_text(free)} available{advice}")


def estimate(config, inputs: Any, training: bool = True) -> Estimate | None:
    """The memory the config's model takes for a task's ``inputs`` (``input_shape`` and
    ``outputs``, as a TaskMeta has them), counted on the meta device; None when some tensor
    would be too large for torch to describe at all."""
    batch = [config.batch_size, *inputs.input_shape]
    if math.prod(batch) >= _LARGEST:
        return None
    try:
        with torch.device("meta"):  # the weights file changes no size: it is not read here
            model = build_model(config if config.weights is None else config.replace(weights=None), inputs)
        layers = _layer_outputs(model.train(training), torch.empty(batch, device="meta"))
    except RuntimeError as exc:
        if "overflow" in str(exc):  # "Storage size calculation overflowed"
            return None
        raise
    parameters = sum(_bytes(tensor) for tensor in (*model.parameters(), *model.buffers()))
    trainable = sum(_bytes(p) for p in model.parameters() if p.requires_grad) if training else 0
    states = _OPTIMIZER_STATES.get(config.optimizer, lambda config: 2)(config)
    activations = sum(layers) if training else 2 * max(layers, default=0)
    return Estimate(parameters, trainable, states * trainable, activations)


def _layer_outputs(model: nn.Module, batch: torch.Tensor) -> list[int]:
    """Bytes of the batch and of each innermost module's output in one forward pass (containers'
    outputs are their last layer's, so they would be counted twice)."""
    sizes = [_bytes(batch)]
    hooks = [module.register_forward_hook(lambda module, args, output: sizes.append(_bytes(output)))
             for module in model.modules() if next(module.children(), None) is None]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _bytes(value: Any) -> int:
    """Bytes of the tensors in ``value``: a tensor, or a tuple, list or dict of them."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        value = list(value.values())
    return sum(_bytes(item) for item in value) if isinstance(value, (list, tuple)) else 0


def _inputs_before_loading(config) -> Inputs | None:
    """An image folder's inputs as far as the config tells, at their smallest (one channel, one
    output: the folder decides both); None for a task whose data must be read first."""
    task = TASKS[config.task]
    if task.inputs != "images" or task.image_set is not None:
        return None
    size = config.image_size or DEFAULT_SIZE
    return Inputs([1, size, size], 1)


def available(device: torch.device) -> int | None:
    """Bytes ``device`` can still give: free GPU memory on CUDA, the kernel's MemAvailable on the
    CPU (what can be had without swapping); None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def _advice(config) -> str:
    """What would make the run smaller, in the CLI's flags."""
    smaller = ["fewer or smaller --hidden layers"] if "hidden" in MODELS[config.model].options else []
    if config.image_size is not None:
        smaller.append("a smaller --image-size")
    return ", ".join([*smaller, "a smaller --batch-size"][:-1]) + " or a smaller --batch-size" if smaller \
        else "a smaller --batch-size"
