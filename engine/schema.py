"""Whether plain data read back from a file has the shape its type hints describe.

Every later command reads back what a run wrote (``events.jsonl``, checkpoints), and such a
file can be torn, hand-edited or crafted. The records are described once, by the dataclasses
and TypedDicts that write them; :func:`misfit` compares a value with such a hint and names the
first part that does not fit (``history[0].epoch is a str, not an int``), so a reader refuses
or skips a record in one place instead of failing deep inside a command. A condition beyond the
type (a tensor's dtype, a time a calendar can show) rides along as ``Annotated[type, Check]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, Callable, Union

_NAMES = {bool: "a bool", int: "an int", float: "a number", str: "a str", dict: "a dict", list: "a list",
          type(None): "None"}


@dataclasses.dataclass(frozen=True)
class Check:
    """In ``Annotated[kind, Check(test, what)]``: a value of that kind must also pass ``test``."""

    test: Callable[[Any], bool]
    what: str  # what a value that passes is, for the message: "a random generator's state"

    def holds(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except Exception:  # a test meets odd values by design: failing to judge one is not passing
            return False


def misfit(value: Any, hint: Any, where: str, from_json: bool = False) -> str | None:
    """Why ``value`` does not fit ``hint`` ("WHERE.epoch is a str, not an int"), or None if it fits.

    ``hint`` is a type, a ``list[...]``/``dict[...]``, a union, a TypedDict or a
    dataclass (both read as dicts of their fields; a dataclass's dict may hold no other keys,
    since it is rebuilt with ``cls(**data)``), or ``Annotated`` with :class:`Check` conditions.
    ``from_json``: a number may be None, as :func:`engine.events.strict_json` writes NaN.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin is typing.Annotated:
        problem = misfit(value, args[0], where, from_json)
        failed = next((c for c in hint.__metadata__ if isinstance(c, Check) and not c.holds(value)), None)
        return problem or (f"{where} is not {failed.what}" if failed else None)
    if origin in (Union, types.UnionType):
        return _union(value, args, where, from_json)
    if typing.is_typeddict(hint) or dataclasses.is_dataclass(hint):
        return _record(value, hint, where, from_json)
    kind = origin or hint
    if hint is typing.Never or not isinstance(kind, type) or not _is(value, kind, from_json):
        return f"{where} is {_a(type(value))}, not {_name(hint)}"
    if kind is list and args:
        return next(filter(None, (misfit(item, args[0], f"{where}[{i}]", from_json)
                                  for i, item in enumerate(value))), None)
    if kind is dict and args:
        return next(filter(None, (misfit(key, args[0], f"{where} key {key!r}", from_json)
                                  or misfit(item, args[1], f"{where}[{key!r}]", from_json)
                                  for key, item in value.items())), None)
    return None


def _is(value: Any, kind: type, from_json: bool) -> bool:
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)) or (from_json and value is None)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _union(value: Any, members: tuple, where: str, from_json: bool) -> str | None:
    problems = [misfit(value, member, where, from_json) for member in members]
    if None in problems:
        return None
    # The member of the value's own kind says best what is wrong inside it.
    own = [p for m, p in zip(members, problems) if _is(value, _outer(m), from_json)]
    return own[0] if own else f"{where} is {_a(type(value))}, not {' or '.join(map(_name, members))}"


def _outer(hint: Any) -> type:
    """The Python type a value of ``hint`` has at the top: dict for records, the type itself otherwise."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _outer(typing.get_args(hint)[0])
    if origin in (list, dict):
        return origin
    if typing.is_typeddict(hint) or dataclasses.is_dataclass(hint):
        return dict
    return hint if isinstance(hint, type) else object


def _record(value: Any, hint: Any, where: str, from_json: bool) -> str | None:
    if not isinstance(value, dict):
        return f"{where} is {_a(type(value))}, not a dict"
    hints, required = record_fields(hint)
    missing = [name for name in hints if name in required and name not in value]
    if missing:
        return f"{where} has no {missing[0]}"
    unknown = sorted(map(str, value.keys() - hints.keys())) if dataclasses.is_dataclass(hint) else []
    if unknown:
        return f"{where} has the unknown field {unknown[0]!r}"
    return next(filter(None, (misfit(value[name], kind, f"{where}.{name}", from_json)
                              for name, kind in hints.items() if name in value)), None)


@functools.cache
def record_fields(hint: Any) -> tuple[dict[str, Any], frozenset[str]]:
    """A record type's fields with their resolved hints, and the names it cannot do without.

    A TypedDict's ``NotRequired[...]`` is read here: under postponed annotations (PEP 563)
    Python cannot see it when it builds ``__required_keys__``.
    """
    hints = typing.get_type_hints(hint, include_extras=True)
    if typing.is_typeddict(hint):
        required = set()
        for name, kind in hints.items():
            wrapper = typing.get_origin(kind)
            if wrapper in (typing.NotRequired, typing.Required):
                hints[name] = typing.get_args(kind)[0]
            if wrapper is typing.Required or (wrapper is not typing.NotRequired and hint.__total__):
                required.add(name)
        return hints, frozenset(required)
    own = dataclasses.fields(hint)
    required = {f.name for f in own if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return {f.name: hints[f.name] for f in own}, frozenset(required)


def _name(hint: Any) -> str:
    if hint is typing.Never:
        return "nothing"
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _name(typing.get_args(hint)[0])
    if origin in (list, dict):
        return _NAMES[origin]
    if typing.is_typeddict(hint) or dataclasses.is_dataclass(hint):
        return "a dict"
    return _a(hint) if isinstance(hint, type) else str(hint)


def _a(kind: type) -> str:
    name = kind.__name__
    return _NAMES.get(kind) or f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def finite_time(value: float) -> bool:
    """Whether ``value`` is a moment a calendar can show (seconds since 1970, before the year 5000)."""
    return math.isfinite(value) and 0 <= value < 95_617_584_000


TIME = Check(finite_time, "a time (seconds since 1970)")
