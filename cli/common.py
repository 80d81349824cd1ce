"""What every command module of the CLI shares: exit codes, the one-line error, JSON output and
the ``--code`` option. Kept apart from ``cli.main`` so that command modules need not import it."""

from __future__ import annotations

import json
import sys

import typer

from engine.text import printable

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Every character that ends a line, as an escape: an error stays one line whatever value it quotes.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def _code_option():
    """``--code FILE``, for the commands that rebuild a run's model of the user's own code."""
    return typer.Option(None, "--code", help="where your own model or data code is now (FILE.py), when it moved "
                        "or changed since the run trained; naming it trusts it as it is")


def _json(data) -> None:
    from engine.events import strict_json

    print(json.dumps(strict_json(data), indent=2, default=float))


def _error(text: str) -> None:
    print(f"torchdeck: error: {printable(one_line(text))}", file=sys.stderr)


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped, for a report that must stay one line."""
    return text.translate(_LINE_BREAKS)
