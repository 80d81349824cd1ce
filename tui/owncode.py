"""The wizard's "your own…": a model or data set from the user's .py file, and its arguments.

Picking "your own…" (the last task of the list, the last entry of the model list) opens
:class:`OwnCodeScreen`: a path with completion (→ takes it), the classes and functions the file
defines that fit (read in a thread job, so a slow or broken import never freezes the screen and
its error is the step's one line), and a form of the chosen one's constructor parameters with
their defaults. What it gives back is the reference ``ABS_PATH.py:Name`` and the arguments
that differ from the defaults, which the wizard puts into RunConfig's ``model`` / ``task`` and
``model_args`` / ``task_args`` (a row of JSON the user may still edit). Picking the file is the
user's consent to run it: its path is :func:`engine.usercode.allow` ed before it is imported.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Label, OptionList, Select, Static
from textual.widgets.option_list import Option
from textual.worker import Worker

from engine import usercode
from engine.config import RunConfig, as_text, catalog
from engine.errors import ConfigError
from engine.text import printable
from tui.background import answer, failure, in_thread
from tui.preview import parameter_count, task_data

OWN = "your own…"  # the entry that opens the dialog: no catalog name, no reference
OWNER = {"model_args": "model"}  # the choice whose entry decides whether the row has an effect
FROM_TASK = frozenset(name for names in usercode.TASK_ARGUMENTS.values() for name in names)
LISTED = 2000  # folder entries looked at for a completion


def is_own(name: Any) -> bool:
    return usercode.parse(name) is not None


def label(name: str) -> str:
    """How a choice is listed: a reference as ``Name · file.py``, a name as it is."""
    ref = usercode.parse(name)
    return name if ref is None else f"{ref.name} · {os.path.basename(ref.source)}"


def model_choices(current: str) -> list[tuple[str, str]]:
    """The model list: the catalog, the current model when it is not listed (the user's own, a
    torchvision name from a TOML file), and "your own…"."""
    names = [(name, name) for name in catalog("model")]
    if (current, current) not in names:  # not `in catalog`: that makes entries for names beyond its list
        names.append((label(current), current))
    return [*names, (OWN, OWN)]


def task_options(current: str) -> list[Option]:
    """The task list's last entries: the current task when it is the user's own, and "your own…"."""
    options = []
    if (ref := usercode.parse(current)) is not None:
        options.append(Option(Text.assemble((ref.name, "bold"), "  ", ("your code", "italic"), "\n",
                                            printable(ref.source)), id=current))
    return [*options, Option(Text.assemble((OWN, "bold"), "\n", KINDS["task"].what, " from a .py file"), id=OWN)]


@dataclass(frozen=True)
class Kind:
    """What each option takes from the user's code."""

    title: str
    what: str
    expect: Callable[[], tuple[type, ...]]  # lazily: torch is imported when the dialog is used


def _modules() -> tuple[type, ...]:
    from torch import nn

    return (nn.Module,)


def _datasets() -> tuple[type, ...]:
    from torch.utils.data import Dataset

    return (Dataset,)


KINDS = {
    "model": Kind("Your own model", "an nn.Module subclass or a function returning one", _modules),
    "task": Kind("Your own data set", "a Dataset subclass or a function returning data", _datasets),
}


class PathSuggester(Suggester):
    """Completes the last part of a path from its folder (a folder gets its ``/``), preferring
    folders and .py files; the folder is read off the app's thread."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return await asyncio.to_thread(complete, value)


def complete(value: str) -> str | None:
    folder, start = os.path.split(value)
    try:
        with os.scandir(os.path.expanduser(folder or ".")) as entries:
            found = [(not entry.is_dir(), not entry.name.endswith(".py"), entry.name + "/" * entry.is_dir())
                     for _, entry in zip(range(LISTED), entries)
                     if entry.name.startswith(start) and (start.startswith(".") or not entry.name.startswith("."))]
    except OSError:
        return None
    return value + min(found)[2][len(start):] if found and start else None


@dataclass(frozen=True)
class Parameter:
    """A constructor parameter as the form shows it: the text of its default, or why it is empty."""

    name: str
    default: str  # as typed back ('' for none, or one not typed: None, an object)
    hint: str  # the placeholder of an empty field
    needed: bool


def parameters(target: Any, option: str) -> list[Parameter]:
    """The parameters of ``target`` that can be given by name, as the form's fields."""
    try:
        found = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    out = []
    for p in found:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if option == "model" and p.name in FROM_TASK:
            out.append(Parameter(p.name, "", "from the task", False))
        elif p.default is p.empty:
            out.append(Parameter(p.name, "", "needed", True))
        else:
            text = shown(p.default)
            out.append(Parameter(p.name, text or "", "" if text else f"{printable(repr(p.default))[:40]} (default)",
                                 False))
    return out


def shown(value: Any) -> str | None:
    """``value`` as typed in the form (text plain unless it would read as JSON); None when it
    is no plain value."""
    if isinstance(value, str):
        return json.dumps(value) if typed(value) != value else value
    try:
        return json.dumps(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def typed(text: str) -> Any:
    """What a field holds: JSON when it reads as JSON (numbers, lists, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def arguments(fields: list[Parameter], texts: Mapping[str, str], option: str) -> dict[str, Any]:
    """The arguments the form gives: every field typed other than its default."""
    out = {}
    for p in fields:
        text = texts[p.name].strip()
        if not text and p.needed:
            raise ConfigError(f"{option}_args: {p.name} needs a value", option=f"{option}_args")
        if text and text != p.default:
            out[p.name] = typed(text)
    return out


class OwnCodeScreen(ModalScreen[tuple[str, dict] | None]):
    """File → class or function → arguments; dismissed with (reference, arguments) or None."""

    DEFAULT_CSS = """
    OwnCodeScreen { align: center middle; }
    OwnCodeScreen > Vertical { width: 78; height: 22; padding: 0 1; border: thick $accent; background: $surface; }
    OwnCodeScreen .hint { color: $text-muted; }
    OwnCodeScreen #own-path { margin: 1 0; }
    OwnCodeScreen #own-status { height: auto; max-height: 4; }
    OwnCodeScreen #own-status.error { color: $text-error; }
    OwnCodeScreen #own-names { height: auto; max-height: 6; display: none; }
    OwnCodeScreen #own-form { height: 1fr; }
    OwnCodeScreen .field { height: 1; }
    OwnCodeScreen .field Label { width: 20; }
    OwnCodeScreen .field Input { width: 24; }
    OwnCodeScreen .field Static { padding-left: 2; color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, option: str, config: RunConfig) -> None:
        super().__init__()
        self.option, self.kind, self.config = option, KINDS[option], config
        current = getattr(config, option)
        self.current = usercode.parse(current)
        self.given = dict(getattr(config, f"{option}_args")) if self.current else {}
        self.path, self.found, self.fields = "", {}, []

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text(f"{self.kind.title}: {self.kind.what}", style="bold"))
            yield Static("The path of a .py file (→ completes it), Enter reads it · Escape cancels", classes="hint")
            yield Input(self.current.source if self.current else "", placeholder="path/to/file.py", compact=True,
                        suggester=PathSuggester(), id="own-path")
            yield Static(id="own-status")
            yield OptionList(id="own-names")
            yield VerticalScroll(id="own-form")

    def on_mount(self) -> None:
        if self.current:
            self._read(self.current.source)

    def _status(self, message: str, error: bool = False) -> None:
        status = self.query_one("#own-status", Static)
        status.update(Text(printable(message)))
        status.set_class(error, "error")

    # --- the file and what it defines ---------------------------------------------------

    @on(Input.Submitted, "#own-path")
    def _submitted(self, event: Input.Submitted) -> None:
        self._read(event.value)

    def _read(self, text: str) -> None:
        self._status(f"reading {text.strip()}…")
        self.query_one("#own-names").display = False
        self.query_one("#own-form").remove_children()
        self._scan(text)

    @in_thread("own")
    def _scan(self, text: str) -> None:
        """Import the file (the user chose it: it may run) and list what fits, with parameters."""
        path, option = os.path.realpath(os.path.expanduser(text.strip())), self.option
        if os.path.isdir(path):
            raise ConfigError(f"{option}: {path} is a folder; type the name of a .py file in it", option=option)
        if not path.endswith(".py"):
            raise ConfigError(f"{option}: {path} is not a .py file", option=option)
        usercode.allow(path)
        found = {}
        for name in usercode.offered(path, option, self.kind.expect()):
            target = usercode.load(usercode.Reference(path, name), option, self.kind.expect(), self.kind.what)
            found[name] = parameters(target, option)
        answer(self._listed, path, found)

    def _listed(self, path: str, found: dict[str, list[Parameter]]) -> None:
        self.path, self.found = path, found
        if not found:
            return self._status(f"{self.option}: {path} defines nothing that fits: {self.kind.what}", error=True)
        self._status(f"{os.path.basename(path)} defines these: ↑↓ choose, Enter picks")
        names = self.query_one("#own-names", OptionList)
        names.clear_options()
        names.add_options([Option(name, id=name) for name in found])
        names.display = True
        chosen = self.current.name if self.current and self.current.name in found else None
        names.highlighted = list(found).index(chosen) if chosen else 0
        names.focus()

    # --- the arguments ------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#own-names")
    async def _picked(self, event: OptionList.OptionSelected) -> None:
        self.chosen, self.fields = event.option.id, self.found[event.option.id]
        form = self.query_one("#own-form", VerticalScroll)
        await form.remove_children()
        if not self.fields:
            return self._use()
        given = self.given if self.current and self.current.name == self.chosen else {}
        await form.mount_all(Horizontal(
            Label(p.name),
            Input(shown(given[p.name]) or "" if p.name in given else p.default, placeholder=p.hint, compact=True,
                  id=f"arg-{p.name}"),
            Static("from the task unless typed" if p.hint == "from the task" else "needed" if p.needed else ""),
            classes="field") for p in self.fields)
        self._status(f"the arguments of {self.chosen}: Tab moves, Enter uses them (empty: the default)")
        form.query(Input).first().focus()

    @on(Input.Submitted, "#own-form Input")
    def _use(self) -> None:
        texts = {p.name: self.query_one(f"#arg-{p.name}", Input).value for p in self.fields}
        try:
            args = arguments(self.fields, texts, self.option)
        except ConfigError as exc:
            return self._status(str(exc), error=True)
        self._status(f"trying {self.chosen} with {json.dumps(args) if args else 'its defaults'}…")
        self._try(f"{self.path}:{self.chosen}", args)

    @in_thread("own")
    def _try(self, ref: str, args: dict) -> None:
        """Build the model (on the meta device) or load the data set as the run would, so that a
        failure is told here, where it can be fixed."""
        if self.option == "model":
            parameter_count(self.config.replace(model=ref, model_args=args))
        else:
            task_data(RunConfig.for_task(ref, out=self.config.out, task_args=args))
        answer(self.dismiss, (ref, args))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "own" and (problem := failure(event)) is not None:
            self._status(problem, error=True)


def choose(screen, option: str) -> None:
    """Open the dialog from the wizard's ``screen``; put what it gives into the step."""
    if option == "model":
        with screen.prevent(Select.Changed):  # the list shows the model in use until one is chosen
            screen._row("model").load(screen.config.model)

    def chosen(result: tuple[str, dict] | None) -> None:
        if result is None:
            return screen.query_one("#model" if option == "model" else "#tasks").focus()
        ref, args = result
        (_use_model if option == "model" else _use_task)(screen, ref, as_text(args))

    screen.app.push_screen(OwnCodeScreen(option, screen.config), chosen)


def _use_model(screen, ref: str, args: str) -> None:
    with screen.prevent(Select.Changed, Input.Changed):
        screen._row("model").load(ref)
        screen._row("model_args").load(args)
    screen._check("model")
    screen._row("model").control.focus()


def _use_task(screen, ref: str, args: str) -> None:
    tasks = screen.query_one("#tasks", OptionList)
    with screen.prevent(OptionList.OptionHighlighted):
        tasks.clear_options()
        tasks.add_options(screen._task_options(ref))
        tasks.highlighted = tasks.get_option_index(ref)
    screen._show_task(ref, RunConfig.for_task(ref, out=screen.config.out, task_args=args))
    tasks.focus()


def explain(screen) -> None:
    """The task step with "your own…" highlighted: what Enter will ask for."""
    for row in screen.query("#task-step .option"):
        row.display = False
    screen.later.forget("data")
    screen.query_one("#task-info", Static).update(
        f"{KINDS['task'].what} from your .py file: Enter chooses the file, then the class and its arguments")
    screen._mark("task", {})
