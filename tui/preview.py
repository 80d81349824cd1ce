"""What the wizard shows of a config before it runs: the task's data, the model's size and memory,
and the review's table of every option. Loading and sizing read the disk: the wizard calls them
in its jobs (tui.datarow), never on the app's thread."""

from __future__ import annotations

from dataclasses import fields
from itertools import zip_longest

import torch
from rich.table import Table
from rich.text import Text

from engine import usercode
from engine.config import RunConfig, as_text, option_names
from engine.data.split import TaskData
from engine.data.tasks import load_task
from engine.device import resolve_device
from engine.errors import TorchdeckError
from engine.text import printable, size_text
from engine.train import memory
from engine.train.models import build_model, count_parameters

_task_data: dict[tuple, TaskData] = {}


def data_key(config: RunConfig) -> tuple:
    """What the task's data depends on: the task and the config's data options."""
    return tuple(getattr(config, f.name) for f in fields(config) if f.metadata["group"] == "data")


def task_data(config: RunConfig) -> TaskData:
    """The task's splits on the CPU, loaded once per data source (the config's data options):
    they give the sizes the task step shows and the input and output sizes a parameter count needs."""
    key = data_key(config)
    if key not in _task_data:
        _task_data[key] = load_task(config)
    return _task_data[key]


def loaded(config: RunConfig) -> TaskData | None:
    """The task's data if it was loaded already (no disk is read), else None."""
    return _task_data.get(data_key(config))


def describe_data(data: TaskData) -> str:
    """Two lines on a loaded task: samples, inputs and what is predicted; the split sizes."""
    meta, sizes = data.meta, data.sizes()
    predicts = {"multiclass": f"{meta.outputs} classes", "binary": "2 classes"}.get(meta.kind, "a number")
    return (
        f"{sum(sizes.values())} samples of {' × '.join(map(str, meta.input_shape))} features → {predicts}\n"
        f"split: {sizes['train']} train · {sizes['val']} validation · {sizes['test']} test"
    )


def parameter_count(config: RunConfig) -> int:
    """Parameters of the config's model, built on the meta device so that no memory is taken
    however wide the layers typed are (and without reading a weights file: it changes no count)."""
    with torch.device("meta"):
        return count_parameters(build_model(config.replace(weights=None), task_data(config).meta))


def model_size(config: RunConfig) -> Text:
    """The model's parameters, its inputs and outputs, and the memory a run of it takes against
    what the device has free (engine.train.memory's estimate), in red when it will not fit."""
    meta = task_data(config).meta
    shape = "×".join(map(str, meta.input_shape)) if len(meta.input_shape) > 1 else meta.input_shape[0]
    line = Text(f"{parameter_count(config):,} parameters ({shape} inputs → {meta.outputs} outputs)")
    device = resolve_device(config.device)
    try:
        need = memory.estimate(config, meta)
    except TorchdeckError:
        raise
    except Exception:
        if usercode.parse(config.model) is None:
            raise
        return line  # the user's own code does what the meta device cannot (say, .item()): no estimate
    free = memory.available(device)
    if need is None:
        return line.append(" · needs more memory than any machine has: will not fit", style="red")
    if free is not None and need.total > free:
        return line.append(f" · needs {size_text(need.total)} to train, {device.type} has {size_text(free)} "
                           "free: will not fit", style="red")
    line.append(f" · about {size_text(need.total)} to train")
    return line.append(f" ({size_text(free)} free on {device.type})" if free is not None else "", style="dim")


def option_table(config: RunConfig) -> Table:
    """Every option of ``config`` in two columns of name and value; a value that differs from
    the task's preset is bold."""
    preset = RunConfig.for_task(config.task)
    table = Table.grid(padding=(0, 2))
    for style in ("dim", "", "dim", ""):
        table.add_column(style=style)

    def cells(option: str | None) -> list:
        if option is None:
            return ["", ""]
        value = getattr(config, option)
        changed = value != getattr(preset, option)
        return [option, Text(printable(as_text(value)) or "—", style="bold" if changed else "")]

    names = option_names()
    half = (len(names) + 1) // 2
    for left, right in zip_longest(names[:half], names[half:]):
        table.add_row(*cells(left), *cells(right))
    return table
