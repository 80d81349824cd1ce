"""The wizard's form: a row per RunConfig option, and the check that marks each bad value.

A row is made from the option alone: a list for a choice from a catalog (or from this machine's
devices), a switch for a flag, text to type otherwise, and the option's help as its note. What
is typed is read by RunConfig as the CLI's flags are, so a bad value gets the CLI's message, with
the flags it names turned into the rows that set them (:func:`in_rows`).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from engine.config import (
    RunConfig,
    as_text,
    catalog,
    is_choice,
    option_help,
    option_names,
)
from engine.device import device_name, resolve_device
from engine.errors import ConfigError
from engine.text import printable
from tui.owncode import OWN, model_choices


def checked(base: RunConfig, values: dict[str, Any]) -> tuple[RunConfig | None, dict[str, str]]:
    """``base`` with ``values`` applied, or None and the CLI's message for each bad value.

    RunConfig stops at its first problem and names the option it belongs to (``error.option``),
    so each value blamed is put back to base's and the rest tried again to find the next one. A
    problem with no value of ``values`` to blame is filed under "". A device is also checked
    against this machine, as starting the run would.
    """
    trial, errors = dict(values), {}
    while True:
        try:
            config = base.replace(**trial)
            if "device" in trial:
                resolve_device(config.device)
            return (None if errors else config), errors
        except ConfigError as exc:
            if exc.option in errors:
                return None, errors
            if exc.option not in trial:
                errors[""] = str(exc)
                return None, errors
            errors[exc.option] = str(exc)
            trial[exc.option] = getattr(base, exc.option)


# A CLI flag in an engine message, its value's placeholder (DIR, FILE) and the verb before it.
_FLAG = re.compile(r"(?:\b(with|pass|give|use) )?--([a-z][a-z-]*)(?: [A-Z]+\b)?")
_VERBS = {"with": "in the {} row", "pass": "fill in the {} row", "give": "fill in the {} row", "use": "set {} to"}


def in_rows(message: str) -> str:
    """An engine message as the wizard shows it: a flag of a RunConfig option becomes the row's
    label ("give the image folder with --data-dir DIR" → "... in the data dir row"); the engine's
    messages keep their flags for the CLI."""
    def row(match: re.Match) -> str:
        verb, option = match[1], match[2].replace("-", "_")
        if option not in option_names():
            return match[0]
        return _VERBS.get(verb, "{}").format(option.replace("_", " "))

    return _FLAG.sub(row, message)


def device_choices(current: str) -> list[tuple[str, str]]:
    """The devices this machine has, ``auto`` labelled with what it resolves to; ``current``
    too when it is not one of them (a config from another machine), so it can be marked."""
    names = ["auto", "cpu"]
    if torch.cuda.is_available():
        names += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        names.append("mps")
    if current not in names:
        names.append(current)
    return [(f"auto ({resolve_device('auto')})" if name == "auto" else name, name) for name in names]


def note(option: str, value: Any) -> str:
    """The line beside an option: what the chosen entry does, the device's name, or its help."""
    if is_choice(option):
        return "" if value == OWN else catalog(option)[value].description
    if option == "device":
        try:
            return device_name(resolve_device(value))
        except ConfigError:
            return ""
    return option_help()[option]


def choices(option: str, value: Any) -> list[tuple[str, str]]:
    """A Select's entries: the catalog's (the model's with the current one and "your own…"), or
    this machine's devices."""
    if option == "model":
        return model_choices(value)
    if option == "device":
        return device_choices(value)
    return [(name, name) for name in catalog(option)]


def control_for(option: str, value: Any) -> Widget:
    """The widget that edits an option: a Select for choices, a Switch for flags, else an Input."""
    if is_choice(option) or option == "device":
        return Select(choices(option, value), value=value, allow_blank=False, compact=True, id=option)
    if isinstance(value, bool):  # RunConfig holds a flag's value as a bool, and no other value as one
        return Switch(value, id=option)
    return Input(as_text(value), compact=True, id=option)


class OptionRow(Vertical):
    """One RunConfig option: its name, the control that edits it, a note, and its error below."""

    def __init__(self, option: str, value: Any) -> None:
        super().__init__(id=f"{option}-row", classes="option")
        self.option = option
        self.control = control_for(option, value)
        self.note = Static(note(option, value), classes="note")
        self.error = Static(classes="error")
        self.state = Static(_state(value), classes="state") if isinstance(self.control, Switch) else None

    def compose(self) -> ComposeResult:
        with Horizontal(classes="line"):
            yield Label(self.option.replace("_", " "), classes="label")
            yield self.control
            if self.state is not None:
                yield self.state
            yield self.note
        yield self.error

    def on_switch_changed(self, event: Switch.Changed) -> None:
        self.state.update(_state(event.value))  # the message goes on to the wizard

    @property
    def value(self) -> Any:
        """What the control holds: text for an Input (RunConfig parses it as the CLI would)."""
        return self.control.value

    def load(self, value: Any) -> None:
        if isinstance(self.control, Select) and self.option == "model":  # the current one is listed
            self.control.set_options(choices(self.option, value))
        self.control.value = as_text(value) if isinstance(self.control, Input) else value
        if self.state is not None:
            self.state.update(_state(value))

    def mark(self, message: str | None) -> None:
        """Show ``message`` under the row and style the control as invalid; None clears both."""
        self.control.set_class(bool(message), "invalid")
        self.error.update(Text(printable(in_rows(message or ""))))  # it may quote what was typed: not markup
        self.error.display = bool(message)


def _state(on: bool) -> Text:
    """The word beside a switch: a switch alone does not say which way is on."""
    return Text("on", style="bold") if on else Text("off", style="dim")
