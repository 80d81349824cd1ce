"""The new-run wizard: task → model → training → review, then start.

Every value typed here is checked by building a RunConfig, so a bad value is marked with the
very message the CLI prints for it, and the review shows the equivalent ``torchdeck train``
command. Keyboard only: Enter moves forward and Escape goes back from anywhere (they are screen
priority bindings, so they work inside inputs too; Escape on the first step and q outside a text
field leave), Tab moves between fields, and Space opens a list or flips a switch. What reads the
disk (the data, the model's size) runs in jobs (tui.datarow), so a key is always answered at once.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from rich.text import Text
from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
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

from engine.config import RunConfig, catalog, command_line, is_asked, owner_of
from engine.device import resolve_device
from engine.text import printable
from tui import lrfind, owncode
from tui.datarow import DataJobs, Later, SavePrompt, task_fields
from tui.form import OptionRow, checked, in_rows, note
from tui.preview import option_table

STEPS = ("task", "model", "training", "review")

# The groups of RunConfig's fields each step edits, in field order (a choice comes before the
# options it uses), but for those the wizard does not ask: the task is picked from the list,
# ``out`` is the app's, and the rest keep the task's preset (the CLI and TOML files set them).
STEP_GROUPS = {"task": ("data",), "model": ("model",), "training": ("training", "run")}
NOT_ASKED = ("task", "val_fraction", "test_fraction", "weights", "loss", "monitor", "out", "name")
FIELDS = {
    step: tuple(f.name for f in fields(RunConfig)
                if f.metadata["group"] in groups and f.name not in NOT_ASKED and is_asked(f))
    for step, groups in STEP_GROUPS.items()
}
# The widget that has the focus on arriving at each step.
FIRST = {"task": "#tasks", "model": f"#{FIELDS['model'][0]}", "training": f"#{FIELDS['training'][0]}",
         "review": "#command"}


class WizardScreen(DataJobs, Screen):
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
    WizardScreen .line Switch { border: none; padding: 0 1; height: 1; width: 8; }
    WizardScreen .line .state { width: 16; padding-left: 1; }
    WizardScreen .line Switch:focus { border: none; background-tint: $foreground 10%; }
    WizardScreen .note {
        width: 1fr; padding-left: 2; color: $text-muted;
        text-wrap: nowrap; text-overflow: ellipsis;
    }
    WizardScreen .error { color: $text-error; display: none; }
    WizardScreen .option .error { padding-left: 20; }
    WizardScreen .invalid { background: $error-muted; }
    WizardScreen #parameters, WizardScreen #size { margin-top: 1; text-style: bold; }
    WizardScreen #command { height: auto; max-height: 4; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("enter", "next", "next", priority=True),
        Binding("enter", "start", "start", priority=True),
        Binding("escape", "back", "back", priority=True),
        Binding("escape", "leave(True)", "quit", show=False, priority=True),
        Binding("q", "leave", "quit"),
        Binding("ctrl+o", "pick_folder", "choose folder"),
        Binding("ctrl+f", "find_lr", "find lr"),
        Binding("s", "save", "save"),
        Binding("c", "copy", "copy"),
        Binding("b", "browse", "browse"),
    ]

    def __init__(self, out: str | Path, config: RunConfig | None = None) -> None:
        super().__init__()
        self.config = config or RunConfig.for_task(out=str(out))
        self.step = "task"
        self.errors: dict[str, dict[str, str]] = {step: {} for step in FIELDS}
        self.later, self.choice = Later(self), None
        self.sizes: dict[RunConfig, Text] = {}  # the model's size line per config, once counted
        self.model_options = FIELDS["model"]

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
                yield Static("Options the chosen optimizer or scheduler does not use are hidden. "
                             "Ctrl+F finds a learning rate.", classes="hint")
                yield from self._rows("training")
                yield Static(id="training-error", classes="error")
            with VerticalScroll(id="review-step"):
                yield Static(id="summary")
                yield Static(id="size")
                yield Static(id="config-table")
                yield Label("The same run from the command line (c copies it):")
                yield TextArea(read_only=True, soft_wrap=True, compact=True, id="command")
                yield Static("Enter starts the run · s saves the config as TOML · Escape goes back",
                             classes="hint")
        yield Footer()

    def _task_options(self, own: str | None = None) -> list[Option]:
        return [
            *(Option(Text.assemble((name, "bold"), "  ", (spec.kind, "italic"), "\n", spec.description), id=name)
              for name, spec in catalog("task").items()),
            *owncode.task_options(own or self.config.task),
        ]

    def _rows(self, step: str) -> list[OptionRow]:
        return [OptionRow(option, getattr(self.config, option)) for option in FIELDS[step]]

    def _row(self, option: str) -> OptionRow:
        return self.query_one(f"#{option}-row", OptionRow)

    def on_mount(self) -> None:
        self.sub_title = "new run"
        tasks = self.query_one("#tasks", OptionList)
        tasks.highlighted = tasks.get_option_index(self.config.task)
        self._load()
        self._go("task")

    # --- checking -----------------------------------------------------------------------

    def _task_choice(self, now: bool = False) -> RunConfig | None:
        """The config that picking the highlighted task gives, or None with the reason marked.

        The same task keeps the current choices; another task starts from its preset, keeping
        ``out``. Its data is loaded in a job (after a pause in typing, or ``now``); a task that
        reads a data folder must find its data there before Enter moves on.
        """
        spec = catalog("task")[self.query_one("#tasks", OptionList).highlighted_option.id]
        base = self.config if spec.name == self.config.task else RunConfig.for_task(spec.name, out=self.config.out)
        shown = task_fields(spec)
        for option in FIELDS["task"]:
            self._row(option).display = option in shown
        typed = {option: self._row(option).value for option in shown}
        config, errors = checked(base, {option: None if value == "" else value for option, value in typed.items()})
        self.choice = config
        self._mark("task", errors)
        info = Text.assemble((spec.name, "bold"), f" · {spec.kind} · data from {spec.source}")
        if config is None:
            self.later.forget("data")
            self.query_one("#task-info", Static).update(info)
        else:
            self._ask_data(config, info, shown, now)
        return config

    def _check(self, step: str) -> bool:
        """Show the step's options that matter, mark its bad values, and take it into ``config``.

        An option the chosen model, optimizer or scheduler ignores is hidden and keeps the
        task's preset value, so the command line and TOML carry no option without effect.
        """
        preset = RunConfig.for_task(self.config.task)
        values = {}
        for option in FIELDS[step]:
            row, owner = self._row(option), owner_of(option) or owncode.OWNER.get(option)
            row.display = owner is None or option in catalog(owner)[self._row(owner).value].options
            values[option] = row.value if row.display else getattr(preset, option)
            row.note.update(note(option, row.value))
        config, errors = checked(self.config, values)
        if config is not None:
            self.config = config
        self._mark(step, errors)
        if step == "model":
            self._show_parameters(errors)
        return not errors

    def _mark(self, step: str, errors: dict[str, str]) -> None:
        """Show each error under its option; one that blames no option of the step under the step."""
        self.errors[step] = errors
        for option in FIELDS[step]:
            self._row(option).mark(errors.get(option))
        problem = self.query_one(f"#{step}-error", Static)
        problem.update(Text(printable(in_rows(errors.get("", "")))))
        problem.display = "" in errors

    @on(Input.Changed)
    @on(Select.Changed)
    @on(Switch.Changed)
    def _changed(self, event) -> None:
        self._stop_waiting()  # a change since Enter: Enter again to move on
        if event.control.id == "model" and event.value == owncode.OWN:
            return owncode.choose(self, "model")
        step = next(step for step, options in FIELDS.items() if event.control.id in options)
        if step == "task":
            self._task_choice()
        else:
            self._check(step)

    @on(OptionList.OptionHighlighted, "#tasks")
    def _task_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        """Show the task's details and the data options it would use (its folder or file, target)."""
        self._stop_waiting()
        if event.option.id == owncode.OWN:
            return owncode.explain(self)
        self._show_task(event.option.id)

    def _show_task(self, name: str, base: RunConfig | None = None) -> None:
        spec = catalog("task")[name]
        base = base or (self.config if spec.name == self.config.task else RunConfig.for_task(spec.name))
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
        if self.waiting is not None:  # typed ahead: the step moves on when its answer comes
            self.ahead += 1
            return
        if self.step == "task":
            if self.query_one("#tasks", OptionList).highlighted_option.id == owncode.OWN:
                return owncode.choose(self, "task")
            config = self._task_choice(now=True)
            if config is None:
                return self._refuse("task")
            if self.later.wanted.get("data") is not None:  # its data is being read: move on when it is
                self.waiting = "task"
                return self._task_choice(now=True)
            task_changed = config.task != self.config.task
            self.config = config
            if task_changed:
                self._load()
        elif not self._check(self.step):
            return self._refuse(self.step)
        elif self.step == "model" and self.config not in self.sizes:  # being counted: move on when it is
            self.waiting = "model"
            return self._show_parameters({}, now=True)
        self._go(STEPS[STEPS.index(self.step) + 1])

    def action_back(self) -> None:
        self._skip_if_list_open()
        self._stop_waiting()
        self._go(STEPS[STEPS.index(self.step) - 1])

    def action_leave(self, escape: bool = False) -> None:
        """q anywhere but in a text field, Escape on the first step: out of the wizard."""
        self._skip_if_list_open()
        self.app.action_leave()

    def action_start(self) -> None:
        self.app.start_run(self.config)

    def action_save(self) -> None:
        def saved(path: Path | None) -> None:
            if path is not None:
                self.notify(f"saved the config to {path}", markup=False)

        self.app.push_screen(SavePrompt(self.config.to_toml()), saved)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(command_line(self.config))
        self.notify("copied the command to the clipboard")

    def action_browse(self) -> None:
        self.app.open_browser()

    def action_find_lr(self) -> None:
        lrfind.find(self)  # the range test of the options so far; its suggestion fills the lr row

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Show in the footer only the keys that work on this step."""
        if action == "next":
            return self.step != "review"
        if action == "back":
            return self.step != "task"
        if action == "leave":
            return self.step == "task" or not parameters  # Escape (leave(True)) on the first step, q on any
        if action == "pick_folder":
            return self.step == "task" and self._row("data_dir").display
        if action in ("start", "save", "copy"):
            return self.step == "review"
        if action == "find_lr":
            return self.step == "training"
        return True

    # --- review -------------------------------------------------------------------------

    def _show_review(self) -> None:
        config = self.config
        self.query_one("#summary", Static).update(Text.assemble(
            (config.task, "bold"),
            f" · {config.model} · {config.epochs} epochs on {resolve_device(config.device)} · saved under "
            f"{config.out}\n", ("Values in bold differ from the task's preset.", "dim"),
        ))
        self._ask_size(config, now=True)
        self.query_one("#config-table", Static).update(option_table(config))
        self.query_one("#command", TextArea).load_text(command_line(config))
