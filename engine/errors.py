"""Errors a user can act on.

Everything raised as a :class:`TorchdeckError` is the user's to fix (a bad option, a missing
file, a checkpoint that does not fit): front ends print its message as one line and exit with
status 2 instead of showing a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TorchdeckError(Exception):
    """A problem with the user's input, reported as one clear line.

    ``option``: the run option (a RunConfig field name) the problem belongs to, when there is
    one, so a form can mark that field without reading the message.
    """

    def __init__(self, message: str, *, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class ConfigError(TorchdeckError):
    """An option of a run has a bad name or value."""


class DataError(TorchdeckError):
    """A data set is missing, unreadable or unusable."""


class CheckpointError(TorchdeckError):
    """A checkpoint or run directory cannot be read or does not fit."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean 'x'?)' for the closest choice, or '' when none is close."""
    choices = list(choices)
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""
