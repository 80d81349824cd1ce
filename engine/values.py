"""Option values: the checks of RunConfig's fields and how a loose value becomes a field's type.

A value may come as CLI or form text, a TOML value or a checkpoint's saved config; every one goes
through :func:`coerce`, so ``"16,8"``, ``[16, 8]`` and ``(16, 8)`` are the same layer list and
a bad value is the same one-line ConfigError whichever way it came.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import Field
from typing import Any

from engine import usercode
from engine.errors import ConfigError, did_you_mean


def positive(value):
    return None if value > 0 else "it must be greater than 0"


def at_least(low):
    return lambda value: None if value >= low else f"it must be at least {low}"


def between(low, high):
    """A check for low <= value < high."""
    return lambda value: None if low <= value < high else f"it must be in [{low}, {high})"


def fraction(value):
    return None if 0 < value < 0.5 else "it must be between 0 and 0.5 (exclusive)"


def one_of(*choices):
    return lambda value: None if value in choices else f"choose one of {', '.join(choices)}{did_you_mean(value, choices)}"


def image_size(value):
    return None if value is None or value >= 8 else "it must be at least 8 (pixels)"


def gamma(value):
    return None if 0 < value <= 1 else "it must be in (0, 1]"


def layer_sizes(value):
    return None if all(size >= 1 for size in value) else "every layer size must be at least 1"


DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:(0|[1-9][0-9]*))?")  # an index as torch reads it: no leading zeros


def device(value):
    return None if DEVICE_NAME.fullmatch(value) else "use auto, cpu, cuda, cuda:N or mps"


class Arguments(Mapping):
    """Keyword arguments for a user's code (``--model-args``, ``[model_args]``): a read-only,
    hashable mapping of plain values (text, numbers, booleans, lists and tables of them), so a
    RunConfig stays a frozen value that TOML, JSON and checkpoints hold as it is."""

    def __init__(self, data: Mapping[str, Any] = ()) -> None:
        self._data = dict(data)
        self._key = json.dumps(self._data, sort_keys=True)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self) -> str:
        return self._key

    def __deepcopy__(self, memo: dict) -> "Arguments":
        return self  # immutable: dataclasses.asdict may share it


def value_kind(f: Field) -> str:
    """What an option's field holds: ``bool``, ``int``, ``float``, ``tuple`` (of whole numbers)
    or ``str``; None is allowed besides where its type says so."""
    return f.type.split("[")[0].split(" ")[0]


def coerce(f, value: Any) -> Any:
    """Turn a loose value (TOML, CLI text) into the field's type, or explain why not."""
    kind, original = value_kind(f), value
    try:
        if value is None:
            if "None" in f.type:
                return None
            raise ValueError
        if kind == "tuple":
            if isinstance(value, str):
                value = [part for part in value.replace(" ", "").split(",") if part]
            return tuple(_integer(v) for v in value)
        if kind == "Arguments":
            return _arguments(f.name, value)
        if kind == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind == "int":
            return _integer(value)
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        if isinstance(value, str):  # ~ in a path is the home folder, whichever front end the value came from
            if f.name in ("model", "task"):  # a file of the user's code: where it is, from any folder
                return usercode.resolved(value)
            return os.path.expanduser(value) if f.name in ("data_dir", "out", "weights") else value
        raise ValueError
    except (TypeError, ValueError):
        expected = {
            "tuple": "a list of whole numbers such as 16,8",
            "bool": "true or false",
            "int": "a whole number",
            "float": "a finite number",
        }.get(kind, "text")
        raise ConfigError(f"{f.name}: {original!r} is not allowed; it must be {expected}", option=f.name) from None


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError
        return int(value)
    return int(value)


_PLAIN = (str, int, float, bool)


def _arguments(option: str, value: Any) -> Arguments:
    """``--model-args`` / ``--task-args``: a JSON object (command line, form) or a table (TOML)
    of plain values, with text keys."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ConfigError(f"{option}: {value!r} is not a JSON object: {exc}", option=option) from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{option}: {value!r} is not allowed; it must be a JSON object such as "
                          f"'{{\"hidden_dim\": 32}}'", option=option)
    problem = _not_plain(value)
    if problem:
        raise ConfigError(f"{option}: {problem}", option=option)
    return value if isinstance(value, Arguments) else Arguments(value)


def _not_plain(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not plain data that TOML and JSON both hold, or None."""
    if depth > 8:
        return "it nests deeper than 8 levels"
    if isinstance(value, float) and not math.isfinite(value):
        return "its numbers must be finite"
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return "its keys must be text"
        return next((p for p in (_not_plain(v, depth + 1) for v in value.values()) if p), None)
    if isinstance(value, (list, tuple)):
        return next((p for p in (_not_plain(v, depth + 1) for v in value) if p), None)
    return f"{value!r} is not a text, a number, a boolean, a list or a table"
