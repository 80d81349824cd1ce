"""What the wizard shows of a config before it runs: the task's data, the model's size, and the
review's table of every option."""

from __future__ import annotations

from dataclasses import fields
from itertools import zip_longest

import torch
from rich.table import Table
from rich.text import Text

from engine.config import RunConfig, as_text, option_names
from engine.data.split import TaskData
from engine.data.tasks import load_task
from engine.text import printable
from engine.train.models import build_model, count_parameters

_task_data: dict[tuple, TaskData] = {}


def task_data(config: RunConfig) -> TaskData:
    """The task's splits on the CPU, loaded once per data source (the config's data options):
    they give the sizes the task step shows and the input and output sizes a parameter count needs."""
    key = tuple(getattr(config, f.name) for f in fields(config) if f.metadata["group"] == "data")
    if key not in _task_data:
        _task_data[key] = load_task(config)
    return _task_data[key]


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
