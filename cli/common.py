"""What every command module of the CLI shares: exit codes, the one-line error, JSON output and
the ``--code`` option. Kept apart from ``cli.main`` so that command modules need not import it."""

from __future__ import annotations

import json
import sys
from dataclasses import Field, fields
from inspect import Parameter, Signature, signature
from typing import Optional

import typer

from engine.config import RunConfig, flag, is_asked
from engine.errors import TorchdeckError
from engine.text import printable
from engine.values import value_kind

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


# Typer's type for each kind of RunConfig value: a list of layer sizes is typed as text (16,8).
_FLAG_TYPES = {"bool": bool, "int": int, "float": float, "tuple": str, "str": str, "Arguments": str}


def _run_option(f: Field) -> Parameter:
    """The ``train`` flag of a RunConfig field: None unless given, so a flag left out leaves
    the value to the --config file, the task's preset or the resumed run."""
    kind = value_kind(f)
    names = [f"{flag(f.name)}/{flag(f.name, on=False)}" if kind == "bool" else flag(f.name)]
    names += [f.metadata["short"]] if f.metadata["short"] else []
    return Parameter(f.name, Parameter.KEYWORD_ONLY, annotation=Optional[_FLAG_TYPES[kind]],
                     default=typer.Option(None, *names, help=f.metadata["help"], show_default=False))


def with_run_options(command):
    """Give ``command`` a flag for every RunConfig field, its value passed in ``**options``:
    RunConfig's fields are the one list of run options, with their help."""
    own = [p.replace(kind=p.KEYWORD_ONLY) for p in signature(command).parameters.values()
           if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = Signature([*(_run_option(f) for f in fields(RunConfig) if is_asked(f)), *own])
    return command


def run_app(**options) -> None:
    """Open the Textual app; it needs a terminal (use `torchdeck train` without one)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise TorchdeckError("the TUI needs a terminal; for headless runs use `torchdeck train` (see --help)")
    from tui.app import TorchdeckApp

    app = TorchdeckApp(**options)
    app.run()
    if app.return_code:  # the app ended on a bug, whose one line it printed
        raise typer.Exit(app.return_code)
