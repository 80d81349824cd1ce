"""A catalog is a named registry of choices: tasks, models, optimizers, schedulers, losses.

The CLI's ``list`` command, the TUI's choices and the validation messages all read the same
catalogs, so adding an entry is the only step needed to offer a new choice everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Callable, Generic, Protocol, TypeVar

from engine.errors import ConfigError, did_you_mean


class Named(Protocol):
    name: str
    description: str


E = TypeVar("E", bound=Named)


class Catalog(Mapping[str, E], Generic[E]):
    """An ordered, read-only mapping from name to entry that explains unknown names.

    ``more``: entries made on demand for names beyond the listed ones (every torchvision model,
    a user's ``FILE.py:NAME``), or None for a name it does not know; iterating lists only the
    listed entries.
    """

    def __init__(self, kind: str, entries: Iterable[E], more: Callable[[str], E | None] | None = None):
        self.kind = kind
        self._entries = {entry.name: entry for entry in entries}
        self._more = more

    def __getitem__(self, name: str) -> E:
        if name in self._entries:
            return self._entries[name]
        found = self._more(name) if self._more is not None and isinstance(name, str) else None
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str, field: str | None = None) -> E:
        """The entry called ``name``; a :class:`ConfigError` naming the choices otherwise, which
        belongs to the option ``field`` when one is given."""
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: a list or table from a TOML file is no name
            raise ConfigError(
                f"{field or self.kind}: '{name}' is not a known {self.kind}; "
                f"choose one of {', '.join(self._entries)}{did_you_mean(name, self._entries)}",
                option=field,
            ) from None
