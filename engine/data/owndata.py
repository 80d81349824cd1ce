"""A user's own data set (``--task FILE.py:NAME``) as a task: their Dataset, splits or tensors.

NAME is a ``Dataset`` class or a function, called with ``--task-args``. What it gives is one
Dataset (split here with the fixed seed, stratified for classes), Datasets ``(train, val,
test)`` (kept as they are) or ``(train, test)`` (val carved out of train), or tensors ``(x, y)``
(arrays too). Every item is an ``(input, target)`` pair. The choices, and why:

- The data is made under the run's seed, the global RNGs of torch, numpy and ``random`` restored
  afterwards: every command that rebuilds it (train, resume, evaluate, export) gets the same
  samples (a set drawn with ``torch.randn`` in ``__init__`` too), and the run's own random
  streams are untouched.
- Tensors ``(x, y)`` and a TensorDataset of two tensors are held on the device and batched by
  index, as the tables are. Any other Dataset is asked for its items batch by batch through a
  DataLoader (engine.data.loader), never frozen into tensors: its ``__getitem__`` may draw a
  new augmentation each time.
- Inputs reach the model as the code gives them (as float32; a lone number is one feature), not
  standardised: the user's code chose its preprocessing, so the stored scaler is the identity.
- The targets decide the kind: floating-point numbers are a regression, integers and booleans
  classes (two: binary), unless ``target_kind`` says otherwise (floats that are all whole
  numbers may be classes). Classes are the distinct target values in order, the model's
  outputs 0..K-1; they are named by the data set's ``classes`` when the values are 0..K-1 and
  it names K of them, else by the values themselves.
- A Dataset's targets come from its ``targets`` attribute (torchvision's sets have one) when
  that holds one per item, else from one pass over its items, which checks every item too.

Whatever is wrong with the data, or fails inside the user's ``__len__`` or ``__getitem__``,
is one DataError line naming the item, also when it happens later in a DataLoader worker.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

from engine import usercode
from engine.data.loader import LoaderSplit
from engine.data.meta import TaskMeta, TaskSpec
from engine.data.split import Split, TaskData, split_rows
from engine.errors import DataError
from engine.text import first_line

MIN_SAMPLES = 10
WHAT = "a Dataset subclass or a function returning data"
GIVE = "give a Dataset, Datasets (train, val, test) or (train, test), or tensors (x, y)"


def _error(message: str) -> DataError:
    return DataError(f"task: {message}", option="task")


@dataclass(frozen=True)
class _Part:
    """One split as the user's code gave it: rows of tensors ``x`` or of a Dataset."""

    what: str  # how messages name it: "the data set", "the test set"
    rows: np.ndarray  # its items' indices in x or the dataset
    shape: list[int]  # one input's shape
    x: torch.Tensor | None = None  # float32 inputs (tensor data), or None for a Dataset
    dataset: Dataset | None = None
    source: Any = None  # what the code returned for it (its ``classes`` may name the classes)

    def take(self, index: np.ndarray) -> "_Part":
        return replace(self, rows=self.rows[index])


def prepare(spec: TaskSpec, config, device, meta: TaskMeta | None) -> TaskData:
    """The train/val/test splits of the user's data on ``device``; with ``meta`` (from a
    checkpoint) its kind and classes are kept, and the data must still give its input shape."""
    target = usercode.load(usercode.parse(spec.name), "task", (Dataset,), WHAT)
    with _seeded(config.seed):
        parts, targets = _parts(usercode.call(target, dict(config.task_args), {}, "task"))
    shape = _common_shape(parts)
    every = torch.cat(list(targets.values()))
    if len(every) < MIN_SAMPLES:
        raise _error(f"the data has only {len(every)} samples; at least {MIN_SAMPLES} are needed")
    kind = meta.kind if meta is not None else _kind(every, config.target_kind)
    notes: list[str] = []
    if kind == "regression":
        labels, class_names = {name: y.float() for name, y in targets.items()}, []
    else:
        labels, class_names, notes = _classes(targets, every, parts)
    parts, labels = _carve(spec, kind, config, parts, labels)
    if meta is None:
        meta = _meta(spec.name, kind, shape, class_names)
    elif list(meta.input_shape) != shape or len(meta.class_names) != len(class_names):
        raise _error(f"the data now gives inputs of shape {shape} and {len(class_names)} classes; the run was "
                     f"trained on {list(meta.input_shape)} and {len(meta.class_names)}")
    splits = {name: _split(parts[name], _shaped(kind, labels[name]), device, config.seed)
              for name in ("train", "val", "test")}
    return TaskData(meta, splits, notes)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """The global RNGs seeded with ``seed`` inside the block and as they were after it."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def _parts(returned: Any) -> tuple[dict[str, _Part], dict[str, torch.Tensor]]:
    """The splits the code gave and their raw targets (one number per item, on the CPU)."""
    if isinstance(returned, Dataset):
        return _named([("train", returned, "the data set")])
    if not isinstance(returned, (tuple, list)):
        raise _error(f"the code returned {_describe(returned)}; {GIVE}")
    if len(returned) == 2 and all(_is_array(value) for value in returned):
        part, y = _from_tensors(returned[0], returned[1], "the tensors (x, y)")
        return {"train": part}, {"train": y}
    if all(isinstance(value, Dataset) for value in returned):
        if len(returned) not in (2, 3):
            raise _error(f"the code returned {len(returned)} Datasets; give (train, val, test) or (train, test)")
        names = ("train", "val", "test") if len(returned) == 3 else ("train", "test")
        return _named([(name, value, f"the {name} set") for name, value in zip(names, returned)])
    if all(_is_array(value) for value in returned):
        raise _error(f"the code returned {len(returned)} tensors; tensors come as (x, y): inputs and targets")
    raise _error(f"the code returned a {type(returned).__name__} of {', '.join(map(_describe, returned))}; {GIVE}")


def _named(datasets: list[tuple[str, Dataset, str]]) -> tuple[dict[str, _Part], dict[str, torch.Tensor]]:
    parts, targets = {}, {}
    for name, dataset, what in datasets:
        parts[name], targets[name] = _from_dataset(dataset, what)
    return parts, targets


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _from_tensors(x: Any, y: Any, what: str, source: Any = None) -> tuple[_Part, torch.Tensor]:
    """Inputs ``x`` (one row per sample; a vector is one feature) and targets ``y`` (one each)."""
    x = _numbers(x, f"the inputs x of {what}").to(torch.float32)
    y = _numbers(y, f"the targets y of {what}")
    if x.dim() == 0 or y.dim() == 0:
        raise _error(f"{what} need one row per sample; x has shape {list(x.shape)}, y {list(y.shape)}")
    if len(x) != len(y):
        raise _error(f"{what} do not fit together: x has {len(x)} samples and y {len(y)}; one target per input")
    if len(x) == 0:
        raise _error(f"{what} are empty")
    if y.dim() > 1 and y[0].numel() == 1:
        y = y.reshape(len(y))
    if y.dim() != 1:
        raise _error(f"the targets y of {what} have shape {list(y.shape)}; one number per sample is needed (a "
                     f"class or a value)")
    x = x.unsqueeze(1) if x.dim() == 1 else x
    for name, values in (("input", x), ("target", y)):
        _finite(values, lambda i, name=name: f"the {name} of sample {i} of {what}")
    return _Part(what, np.arange(len(x)), list(x.shape[1:]), x=x, source=source), y


def _from_dataset(dataset: Dataset, what: str) -> tuple[_Part, torch.Tensor]:
    """A Dataset's part and targets: from its tensors, its ``targets``, or a pass over its items."""
    if isinstance(dataset, IterableDataset):
        raise _error(f"{what} is an IterableDataset; give a Dataset with __len__ and __getitem__")
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) == 2:
        return _from_tensors(*dataset.tensors, what, source=dataset)
    try:
        count = len(dataset)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _error(f"len() of {what} failed: {type(exc).__name__}: {first_line(exc)}") from None
    if count == 0:
        raise _error(f"{what} is empty")
    targets = _targets_attribute(dataset, count, what)
    first, target = _item(dataset, 0, what)
    if targets is None:  # one pass over the items: their targets, every item checked
        found = [target]
        for index in range(1, count):
            x, target = _item(dataset, index, what)
            _same_shape(x, list(first.shape), index, what)
            found.append(target)
        targets = torch.stack(found)
    return _Part(what, np.arange(count), list(first.shape), dataset=dataset, source=dataset), targets


def _targets_attribute(dataset: Dataset, count: int, what: str) -> torch.Tensor | None:
    """The dataset's ``targets`` when it holds one number per item, else None."""
    try:
        targets = torch.as_tensor(getattr(dataset, "targets", None)).cpu()
    except Exception:  # no such attribute (None), or one that is not numbers: the items tell
        return None
    if targets.dim() == 0 or len(targets) != count or targets.numel() != count or targets.dtype.is_complex:
        return None
    targets = targets.reshape(count)
    _finite(targets, lambda i: f"targets[{i}] of {what}")
    return targets


def _item(dataset: Dataset, index: int, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Item ``index`` of ``dataset``: its input as float32 and its target as one number, checked."""
    try:
        item = dataset[index]
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _error(f"item {index} of {what} failed: {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = f"a {type(item).__name__} of {len(item)}" if isinstance(item, (tuple, list)) else _describe(item)
        raise _error(f"item {index} of {what} is {got}, not an (input, target) pair")
    where = f"item {index} of {what}"
    x = _numbers(item[0], f"the input of {where}").to(torch.float32)
    x = x.reshape(1) if x.dim() == 0 else x
    target = _numbers(item[1], f"the target of {where}")
    if target.numel() != 1:
        raise _error(f"the target of {where} has shape {list(target.shape)}; one number is needed (a class or a "
                     f"value)")
    for name, values in (("input", x), ("target", target)):
        _finite(values.reshape(1, -1), lambda _, name=name: f"the {name} of {where}")
    return x, target.reshape(())


def _numbers(value: Any, what: str) -> torch.Tensor:
    """``value`` (a tensor, an array, a number or a list of them) as a real-valued CPU tensor."""
    try:
        tensor = torch.as_tensor(value)
    except Exception:
        raise _error(f"{what} is {_describe(value)}, not numbers (a tensor, an array or a number)") from None
    if tensor.dtype.is_complex:
        raise _error(f"{what} holds complex numbers; real numbers are needed")
    return tensor.cpu()


def _finite(values: torch.Tensor, where) -> None:
    """Refuse NaN and infinite (also float32-overflowing) values, naming the first sample's ``where(i)``."""
    if not values.is_floating_point():
        return
    bad = ~torch.isfinite(values.to(torch.float32).reshape(len(values), -1)).all(dim=1)
    if bad.any():
        raise _error(f"{where(int(bad.nonzero()[0]))} is not a finite number within float32 (NaN, an infinity "
                     f"or beyond ±3.4e38)")


def _same_shape(x: torch.Tensor, shape: list[int], index: int, what: str) -> None:
    if list(x.shape) != shape:
        raise _error(f"the input of item {index} of {what} has shape {list(x.shape)}, item 0's {shape}; every "
                     f"input needs the same shape")


def _common_shape(parts: dict[str, _Part]) -> list[int]:
    shape = parts["train"].shape
    for part in parts.values():
        if part.shape != shape:
            raise _error(f"the inputs of {part.what} have shape {part.shape}, the train set's {shape}")
    return shape


def _kind(targets: torch.Tensor, wanted: str) -> str:
    """regression, binary or multiclass: from the targets' type, or ``wanted`` (target_kind)."""
    floating = targets.is_floating_point()
    if wanted == "regression" or wanted == "auto" and floating:
        return "regression"
    if floating and not bool((targets == targets.round()).all()):
        fraction = targets[targets != targets.round()][0].item()
        raise _error(f"the targets hold numbers with fractions such as {fraction:g}, so they cannot be classes; "
                     f"use --target-kind regression")
    count = len(torch.unique(targets))
    if count < 2:
        raise _error(f"every target is {_value_name(targets[0])}; a classifier needs at least 2 classes")
    return "binary" if count == 2 else "multiclass"


def _classes(targets: dict[str, torch.Tensor], every: torch.Tensor,
             parts: dict[str, _Part]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """(class indices per split, class names, notes): the distinct values in order are 0..K-1."""
    values = torch.unique(every.double())
    labels = {name: torch.searchsorted(values, y.double()) for name, y in targets.items()}
    if torch.equal(values, torch.arange(len(values), dtype=values.dtype)):
        for part in parts.values():
            named = getattr(part.source, "classes", None)
            if isinstance(named, (list, tuple)) and len(named) == len(values):
                return labels, [str(name) for name in named], []
        return labels, [str(i) for i in range(len(values))], []
    names = [_value_name(value) for value in values]
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return labels, names, [f"the class targets {shown} are the model's outputs 0 to {len(names) - 1}, in that order"]


def _value_name(value: torch.Tensor) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


def _carve(spec: TaskSpec, kind: str, config, parts: dict[str, _Part],
           labels: dict[str, torch.Tensor]) -> tuple[dict[str, _Part], dict[str, torch.Tensor]]:
    """The val and test splits the code did not give, cut out of train with the fixed seed."""
    missing = tuple(name for name in ("val", "test") if name not in parts)
    if not missing:
        return parts, labels
    whole, y = parts["train"], labels["train"]
    try:
        rows = split_rows(replace(spec, kind=kind), y.numpy(), config, held_out=missing)
    except ValueError as exc:  # a class too small to have a sample in every split
        raise _error(f"the classes are too small to split ({first_line(exc).split('. ')[0]}); give more samples "
                     f"of each class, or --target-kind regression for targets that are amounts") from None
    parts, labels = dict(parts), dict(labels)
    for name, index in rows.items():
        parts[name], labels[name] = whole.take(index), y[torch.as_tensor(index)]
    return parts, labels


def _shaped(kind: str, labels: torch.Tensor) -> torch.Tensor:
    """Targets as the task's loss takes them: class indices, or one float column."""
    if kind == "multiclass":
        return labels.long()
    return labels.float().unsqueeze(1)


def _meta(task: str, kind: str, shape: list[int], class_names: list[str]) -> TaskMeta:
    """What the model expects: inputs as they are (an identity scaler per feature or channel)."""
    per = [shape[0]] + [1] * (len(shape) - 1)
    return TaskMeta(task=task, kind=kind, input_shape=list(shape),
                    feature_names=[f"x{i}" for i in range(shape[0])] if len(shape) == 1 else [],
                    class_names=class_names, x_mean=torch.zeros(per), x_scale=torch.ones(per))


def _split(part: _Part, y: torch.Tensor, device, seed: int):
    rows = torch.as_tensor(part.rows)
    if part.x is not None:
        return Split(part.x[rows].to(device), y.to(device))
    return LoaderSplit(_Inputs(part), y.to(device), device, seed)


class _Inputs(Dataset):
    """The inputs of a split of the user's Dataset, checked as they are made (in a DataLoader
    worker too): a failing or misshapen item is one line naming it, not a worker's traceback."""

    def __init__(self, part: _Part) -> None:
        self.part = part

    def __len__(self) -> int:
        return len(self.part.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        row = int(self.part.rows[index])
        x, _ = _item(self.part.dataset, row, self.part.what)
        _same_shape(x, self.part.shape, row, self.part.what)
        return x
