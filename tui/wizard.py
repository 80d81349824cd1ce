"""The new-run wizard: task → model → training → review, then start.

Every value typed here is checked by building a RunConfig, so a bad value is marked with the
very message the CLI prints for it, and the review shows the equivalent ``torchdeck train``
command. Keyboard only: Enter moves forward and Escape goes back from anywhere (they are screen
priority bindings, so they work inside inputs too), Tab moves between fields, and Space opens a
list or flips a switch.
"""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path
from typing import Any

import torch
from rich.table import Table
from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widget import Widget
from textual.widgets import (
    ContentSwitcher,
    Footer,
    Header,
    Input,
    Label,
    OptionList,
    Select,
    Static,
    Switch,
    TextArea,
)
from textual.widgets.option_list import Option

from engine.config import (
    RunConfig,
    catalog,
    command_line,
    default_value,
    option_help,
    option_names,
)
from engine.data.split import TaskData
from engine.data.tasks import load_task
from engine.device import device_name, resolve_device
from engine.errors import ConfigError, DataError
from engine.train.models import build_model, count_parameters

STEPS = ("task", "model", "training", "review")

# The options each step edits, in screen order: a choice comes before the options it uses.
FIELDS = {
    "task": ("data_dir", "target", "target_kind", "missing", "image_size", "augment"),
    "model": ("model", "hidden", "activation", "dropout", "batch_norm"),
    "training": (
        "optimizer", "lr", "momentum", "nesterov", "weight_decay", "scheduler", "step_size", "gamma",
        "scheduler_patience", "batch_size", "epochs", "patience", "min_delta", "device", "amp", "compile", "seed",
        "save_every",
    ),
}
# Options picked from a catalog, and those catalogs whose entries list the options they use.
CHOICES = ("model", "activation", "optimizer", "scheduler")
OWNERS = ("model", "optimizer", "scheduler")
# The widget that has the focus on arriving at each step.
FIRST = {"task": "#tasks", "model": "#model", "training": "#optimizer", "review": "#command"}

_task_data: dict[tuple, TaskData] = {}


def task_data(config: RunConfig) -> TaskData:
    """The task's splits on the CPU, loaded once per data source: they give the sizes the task
    step shows and the input and output sizes a parameter count needs."""
    key = (config.task, *(getattr(config, option) for option in FIELDS["task"]), config.val_fraction,
           config.test_fraction)
    if key not in _task_data:
        _task_data[key] = load_task(config)
    return _task_data[key]


def task_fields(spec) -> list[str]:
    """The task step's options that ``spec`` uses: its data folder or file; for a user's own
    table (a table task of kind auto: csv), the target column and how to read it; for an image
    folder, the image size and augmentation."""
    uses = {
        "data_dir": spec.reads_data_dir,
        "target": spec.kind == "auto" and spec.inputs == "table",
        "image_size": spec.inputs == "images" and spec.image_set is None,
    }
    uses.update(target_kind=uses["target"], missing=uses["target"], augment=uses["image_size"])
    return [option for option in FIELDS["task"] if uses[option]]


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


def checked(base: RunConfig, values: dict[str, Any]) -> tuple[RunConfig | None, dict[str, str]]:
    """``base`` with ``values`` applied, or None and the CLI's message for each bad value.

    RunConfig stops at its first problem and names the option it is about, so each value blamed
    is put back to base's and the rest tried again to find the next one. A problem with no
    value of ``values`` to blame is filed under "". A device is also checked against this
    machine, as starting the run would.
    """
    trial, errors = dict(values), {}
    while True:
        try:
            config = base.replace(**trial)
            if "device" in trial:
                resolve_device(config.device)
            return (None if errors else config), errors
        except ConfigError as exc:
            option = str(exc).split(":", 1)[0]
            if option in errors:
                return None, errors
            if option not in trial:
                errors[""] = str(exc)
                return None, errors
            errors[option] = str(exc)
            trial[option] = getattr(base, option)


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


def owner_of(option: str) -> str | None:
    """The choice (model, optimizer, scheduler) whose chosen entry decides whether ``option``
    matters; None for options that always do."""
    return next((owner for owner in OWNERS if any(option in e.options for e in catalog(owner).values())), None)


def note(option: str, value: Any) -> str:
    """The line beside an option: what the chosen entry does, the device's name, or its help."""
    if option in CHOICES:
        return catalog(option)[value].description
    if option == "device":
        try:
            return device_name(resolve_device(value))
        except ConfigError:
            return ""
    return option_help()[option]


def as_text(value: Any) -> str:
    """A config value as written in TOML or typed on the command line; None is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def control_for(option: str, value: Any) -> Widget:
    """The widget that edits an option: a Select for choices, a Switch for flags, else an Input."""
    if option in CHOICES:
        names = [(name, name) for name in catalog(option)]
        return Select(names, value=value, allow_blank=False, compact=True, id=option)
    if option == "device":
        return Select(device_choices(value), value=value, allow_blank=False, compact=True, id=option)
    if isinstance(default_value(option), bool):
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

    def compose(self) -> ComposeResult:
        with Horizontal(classes="line"):
            yield Label(self.option.replace("_", " "), classes="label")
            yield self.control
            yield self.note
        yield self.error

    @property
    def value(self) -> Any:
        """What the control holds: text for an Input (RunConfig parses it as the CLI would)."""
        return self.control.value

    def load(self, value: Any) -> None:
        self.control.value = as_text(value) if isinstance(self.control, Input) else value

    def mark(self, message: str | None) -> None:
        """Show ``message`` under the row and style the control as invalid; None clears both."""
        self.control.set_class(bool(message), "invalid")
        self.error.update(message or "")
        self.error.display = bool(message)


class SavePrompt(ModalScreen[Path | None]):
    """Asks for a path and writes the config's TOML there; dismissed with the path written."""

    DEFAULT_CSS = """
    SavePrompt { align: center middle; }
    SavePrompt > Vertical {
        width: 60; height: auto; padding: 1 2;
        border: thick $accent; background: $surface;
    }
    SavePrompt .error { color: $text-error; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel")]

    def __init__(self, toml: str) -> None:
        super().__init__()
        self.toml = toml

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Save the config as TOML: Enter saves, Escape cancels")
            yield Input("run.toml", id="save-path")
            yield Static(classes="error")

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        path = Path(event.value).expanduser()
        try:
            path.write_text(self.toml, encoding="utf-8")
        except OSError as exc:
            self.query_one(".error", Static).update(f"{path} cannot be written: {exc.strerror or exc}")
            return
        self.dismiss(path)


class WizardScreen(Screen):
    """Four steps that end in ``app.start_run(config)``; ``config`` is always the last valid one."""

    DEFAULT_CSS = """
    WizardScreen #steps { height: 1; padding: 0 1; background: $panel; }
    WizardScreen ContentSwitcher { height: 1fr; }
    WizardScreen ContentSwitcher > * { padding: 0 1; }
    WizardScreen .hint { color: $text-muted; margin-bottom: 1; }
    WizardScreen #tasks { height: 1fr; }
    WizardScreen #task-info { height: auto; }
    WizardScreen .option { height: auto; }
    WizardScreen .line { height: auto; }
    WizardScreen .label { width: 20; }
    WizardScreen .line Input, WizardScreen .line Select { width: 24; }
    WizardScreen .line Switch { border: none; padding: 0 1; height: 1; width: 8; margin-right: 16; }
    WizardScreen .line Switch:focus { border: none; background-tint: $foreground 10%; }
    WizardScreen .note {
        width: 1fr; padding-left: 2; color: $text-muted;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    WizardScreen .error { color: $text-error; display: none; }
    WizardScreen .option .error { padding-left: 20; }
    WizardScreen .invalid { background: $error-muted; }
    WizardScreen #parameters { margin-top: 1; text-style: bold; }
    WizardScreen #command { height: auto; max-height: 4; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("enter", "next", "next", priority=True),
        Binding("enter", "start", "start", priority=True),
        Binding("escape", "back", "back", priority=True),
        Binding("s", "save", "save TOML"),
        Binding("c", "copy", "copy command"),
        Binding("b", "browse", "browse runs"),
    ]

    def __init__(self, out: str | Path, config: RunConfig | None = None) -> None:
        super().__init__()
        self.config = config or RunConfig.for_task(out=str(out))
        self.step = "task"
        self.errors: dict[str, dict[str, str]] = {step: {} for step in FIELDS}

    # --- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="steps")
        with ContentSwitcher(initial="task-step"):
            with Vertical(id="task-step"):
                yield Static("↑↓ choose what to learn, Enter picks it: a new task starts from its preset.",
                             classes="hint")
                yield OptionList(*self._task_options(), id="tasks")
                yield Static(id="task-info")
                yield from self._rows("task")
                yield Static(id="task-error", classes="error")
            with VerticalScroll(id="model-step"):
                yield Static("Tab moves between fields, Space opens a list or flips a switch.", classes="hint")
                yield from self._rows("model")
                yield Static(id="model-error", classes="error")
                yield Static(id="parameters")
            with VerticalScroll(id="training-step"):
                yield Static("Options the chosen optimizer or scheduler does not use are hidden.",
                             classes="hint")
                yield from self._rows("training")
                yield Static(id="training-error", classes="error")
            with VerticalScroll(id="review-step"):
                yield Static(id="summary")
                yield Static(id="config-table")
                yield Label("The same run from the command line (c copies it):")
                yield TextArea(read_only=True, soft_wrap=True, compact=True, id="command")
                yield Static("Enter starts the run · s saves the config as TOML · Escape goes back",
                             classes="hint")
        yield Footer()

    def _task_options(self) -> list[Option]:
        return [
            Option(Text.assemble((name, "bold"), "  ", (spec.kind, "italic"), "\n", spec.description), id=name)
            for name, spec in catalog("task").items()
        ]

    def _rows(self, step: str) -> list[OptionRow]:
        return [OptionRow(option, getattr(self.config, option)) for option in FIELDS[step]]

    def _row(self, option: str) -> OptionRow:
        return self.query_one(f"#{option}-row", OptionRow)

    def on_mount(self) -> None:
        self.sub_title = "new run"
        self.query_one("#tasks", OptionList).highlighted = list(catalog("task")).index(self.config.task)
        self._load()
        self._go("task")

    # --- checking -----------------------------------------------------------------------

    def _task_choice(self) -> RunConfig | None:
        """The config that picking the highlighted task gives, or None with the reason marked.

        The same task keeps the current choices; another task starts from its preset, keeping
        ``out``. A task that reads a data folder must find its data there.
        """
        spec = catalog("task")[self.query_one("#tasks", OptionList).highlighted_option.id]
        base = self.config if spec.name == self.config.task else RunConfig.for_task(spec.name, out=self.config.out)
        shown = task_fields(spec)
        for option in FIELDS["task"]:
            self._row(option).display = option in shown
        typed = {option: self._row(option).value for option in shown}
        config, errors = checked(base, {option: None if value == "" else value for option, value in typed.items()})
        info = Text.assemble((spec.name, "bold"), f" · {spec.kind} · data from {spec.source}")
        if config is not None:
            try:
                data = task_data(config)
            except DataError as exc:
                option = str(exc).split(":", 1)[0]  # the csv task's messages start with the option at fault
                errors[option if option in shown else "data_dir" if spec.reads_data_dir else ""] = str(exc)
                config = None
            else:
                info.append("\n" + describe_data(data))
        self.query_one("#task-info", Static).update(info)
        self._mark("task", errors)
        return config

    def _check(self, step: str) -> bool:
        """Show the step's options that matter, mark its bad values, and take it into ``config``.

        An option the chosen model, optimizer or scheduler ignores is hidden and keeps the
        task's preset value, so the command line and TOML carry no option without effect.
        """
        preset = RunConfig.for_task(self.config.task)
        values = {}
        for option in FIELDS[step]:
            row, owner = self._row(option), owner_of(option)
            row.display = owner is None or option in catalog(owner)[self._row(owner).value].options
            values[option] = row.value if row.display else getattr(preset, option)
            row.note.update(note(option, row.value))
        config, errors = checked(self.config, values)
        if config is not None:
            self.config = config
        self._mark(step, errors)
        if step == "model":
            self._show_parameters()
        return config is not None

    def _mark(self, step: str, errors: dict[str, str]) -> None:
        """Show each error under its option; one that blames no option of the step under the step."""
        self.errors[step] = errors
        for option in FIELDS[step]:
            self._row(option).mark(errors.get(option))
        problem = self.query_one(f"#{step}-error", Static)
        problem.update(errors.get("", ""))
        problem.display = "" in errors

    def _show_parameters(self) -> None:
        text = "parameters: fix the marked value to count them"
        if not self.errors["model"]:
            meta = task_data(self.config).meta
            shape = "×".join(map(str, meta.input_shape)) if len(meta.input_shape) > 1 else meta.input_shape[0]
            text = f"{parameter_count(self.config):,} parameters ({shape} inputs → {meta.outputs} outputs)"
        self.query_one("#parameters", Static).update(text)

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _changed(self, event) -> None:
        step = next(step for step, options in FIELDS.items() if event.control.id in options)
        if step == "task":
            self._task_choice()
        else:
            self._check(step)

    @on(OptionList.OptionHighlighted, "#tasks")
    def _task_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Show the task's details and the data options it would use (its folder or file, target)."""
        spec = catalog("task")[event.option.id]
        base = self.config if spec.name == self.config.task else RunConfig.for_task(spec.name)
        with self.prevent(Input.Changed):
            for option in task_fields(spec):
                self._row(option).load(getattr(base, option))
        self._task_choice()

    def _load(self) -> None:
        """Put ``config`` into every control (after a task change, or on arrival)."""
        with self.prevent(Input.Changed, Select.Changed, Switch.Changed):
            for step in ("model", "training"):
                for option in FIELDS[step]:
                    self._row(option).load(getattr(self.config, option))
        self._check("model")
        self._check("training")

    # --- moving between steps -----------------------------------------------------------

    def _go(self, step: str) -> None:
        self.step = step
        self.query_one(ContentSwitcher).current = f"{step}-step"
        marks = []
        for number, name in enumerate(STEPS, 1):
            label = f" {number} {name.title()} "
            marks.append(f"[reverse b]{label}[/]" if name == step else label)
        self.query_one("#steps", Static).update(" › ".join(marks))
        if step == "review":
            self._show_review()
        self.query_one(FIRST[step]).focus()
        self.refresh_bindings()

    def _skip_if_list_open(self) -> None:
        """Leave Enter and Escape to an open Select list (pick or close it)."""
        if any(select.expanded for select in self.query(Select)):
            raise SkipAction()

    def _refuse(self, step: str) -> None:
        """Stay on the step and put the cursor on the first bad value."""
        self.app.bell()
        bad = next((option for option in FIELDS[step] if option in self.errors[step]), None)
        if bad:
            self._row(bad).control.focus()

    def action_next(self) -> None:
        self._skip_if_list_open()
        if self.step == "task":
            config = self._task_choice()
            if config is None:
                return self._refuse("task")
            task_changed = config.task != self.config.task
            self.config = config
            if task_changed:
                self._load()
        elif not self._check(self.step):
            return self._refuse(self.step)
        self._go(STEPS[STEPS.index(self.step) + 1])

    def action_back(self) -> None:
        self._skip_if_list_open()
        self._go(STEPS[STEPS.index(self.step) - 1])

    def action_start(self) -> None:
        self.app.start_run(self.config)

    def action_save(self) -> None:
        def saved(path: Path | None) -> None:
            if path is not None:
                self.notify(f"saved the config to {path}")

        self.app.push_screen(SavePrompt(self.config.to_toml()), saved)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(command_line(self.config))
        self.notify("copied the command to the clipboard")

    def action_browse(self) -> None:
        self.app.open_browser()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show in the footer only the keys that work on this step."""
        if action == "next":
            return self.step != "review"
        if action == "back":
            return self.step != "task"
        if action in ("start", "save", "copy"):
            return self.step == "review"
        return True

    # --- review -------------------------------------------------------------------------

    def _show_review(self) -> None:
        config, preset = self.config, RunConfig.for_task(self.config.task)
        self.query_one("#summary", Static).update(Text.assemble(
            (config.task, "bold"),
            f" · {config.model} with {parameter_count(config):,} parameters · {config.epochs} epochs on "
            f"{resolve_device(config.device)} · saved under {config.out}\n",
            ("Values in bold differ from the task's preset.", "dim"),
        ))
        table = Table.grid(padding=(0, 2))
        table.add_column(style="dim")
        table.add_column()
        table.add_column(style="dim")
        table.add_column()

        def cells(option: str | None) -> list:
            if option is None:
                return ["", ""]
            value = getattr(config, option)
            return [option, Text(as_text(value) or "—", style="bold" if value != getattr(preset, option) else "")]

        names = option_names()
        half = (len(names) + 1) // 2
        for left, right in zip_longest(names[:half], names[half:]):
            table.add_row(*cells(left), *cells(right))
        self.query_one("#config-table", Static).update(table)
        self.query_one("#command", TextArea).load_text(command_line(config))
