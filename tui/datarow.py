"""The wizard's jobs: what it reads from disk (a path, the task's data, the model's size) off the
app's thread, so every key is answered at once whatever the disk or the network does.

A key only marks what RunConfig itself refuses. What needs the disk is asked of :class:`Later`:
a path typed into the data row is looked at (one ``stat``, in a job) at once, and the task's data
is loaded (a folder scanned, a set read or downloaded) or the model sized only when no key came
for :data:`DELAY` seconds, in a job that a newer request supersedes. Answers carry the request
they answer, and one for a value that has since changed is dropped. Enter on a step whose answer
is still coming asks for it now and moves on when it arrives. A folder that vanishes or cannot be
read mid-scan is a message on its row, never a crash; :class:`FolderPicker` chooses a folder from
a ``DirectoryTree`` instead of typing it, and :class:`SavePrompt` writes the config as TOML.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import DirectoryTree, Input, Label, Static
from textual.worker import Worker

from engine.config import RunConfig, catalog
from engine.errors import TorchdeckError
from engine.text import printable
from tui import owncode
from tui.background import answer, failure, in_thread
from tui.preview import data_key, describe_data, loaded, model_size, task_data

DELAY = 0.3  # seconds without a key before the disk is read
GROUPS = {"data": "task", "size": "model", "path": "task"}  # each job group and the step it reports to
UNCOUNTED = "parameters: fix the marked value to count them"


def task_fields(spec) -> list[str]:
    """The task step's options that ``spec`` uses: its data folder or file; for a user's own
    table (a table task of kind auto: csv), the target column and how to read it; for an image
    folder, the image size and augmentation; for the user's own code, its arguments and kind."""
    own = owncode.is_own(spec.name)
    uses = {
        "data_dir": spec.reads_data_dir,
        "target": spec.kind == "auto" and spec.inputs == "table",
        "image_size": spec.inputs == "images" and spec.image_set is None,
        "task_args": own,
    }
    uses.update(target_kind=uses["target"] or own, missing=uses["target"], augment=uses["image_size"])
    return [option for option, used in uses.items() if used]


class Later:
    """One debounced job per kind: the newest request wins and only its answer is shown."""

    def __init__(self, screen) -> None:
        self.screen = screen
        self.wanted: dict[str, Any] = {}  # kind → the key of the newest request
        self.timers: dict[str, Timer] = {}
        self.running: dict[str, Any] = {}  # kind → the key its job is working on

    def ask(self, kind: str, key: Any, start: Callable[[], None], now: bool = False) -> None:
        """Run ``start`` (which starts the job) after DELAY, or at once; not again while a job
        already works on ``key``."""
        self.forget(kind)
        self.wanted[kind] = key
        if self.running.get(kind) == key:
            return

        def begin() -> None:
            self.timers.pop(kind, None)
            self.running[kind] = key
            start()

        if now:
            begin()
        else:
            self.timers[kind] = self.screen.set_timer(DELAY, begin)

    def forget(self, kind: str) -> None:
        """Stop waiting to start ``kind`` and drop its coming answer."""
        if kind in self.timers:
            self.timers.pop(kind).stop()
        self.wanted.pop(kind, None)

    def took(self, kind: str, key: Any) -> bool:
        """On an answer: whether ``key`` is still the one wanted (the job of ``kind`` is over)."""
        if self.running.get(kind) == key:
            del self.running[kind]
        return self.wanted.get(kind) == key

    @property
    def busy(self) -> bool:
        """A job is waiting to start or working (what a test waits for)."""
        return bool(self.timers) or any(
            worker.node is self.screen and worker.group in GROUPS and not worker.is_finished
            for worker in self.screen.app.workers)


def attempt(work: Callable[[], Any]) -> tuple[Any, str | None, str | None]:
    """``work()``'s value, or None with the option and message of what it refused: an engine
    error, or an OSError of a data folder that changed under the scan (a file or folder vanished)."""
    try:
        return work(), None, None
    except TorchdeckError as exc:
        return None, exc.option, str(exc)
    except OSError as exc:
        return None, "data_dir", f"data_dir: {exc.filename or 'the data'} changed while it was read " \
                                 f"({exc.strerror or exc}); try again"


def folder_problem(path: str) -> str | None:
    """What a typed data path lacks at a glance (one stat, no listing): it must exist."""
    try:
        os.stat(os.path.expanduser(path))
    except FileNotFoundError:
        return f"data_dir: {path} does not exist"
    except OSError as exc:
        return f"data_dir: {path} cannot be read ({exc.strerror or exc})"
    return None


class DataJobs:
    """WizardScreen's jobs and their answers (a mixin: the jobs are the screen's workers)."""

    waiting: str | None = None  # the step whose Enter waits for its job's answer
    ahead = 0  # Enters pressed while waiting: each moves on once more when the answer comes

    def _stop_waiting(self) -> None:
        """A change, a step back or a refusal: the Enters typed so far are void."""
        self.waiting, self.ahead = None, 0

    def _advance(self, step: str) -> None:
        """The answer Enter waited for on ``step`` came: move on, and on again (or start, from
        the review) for each Enter typed meanwhile, until a step waits again."""
        if self.waiting != step:
            return
        self.waiting = None
        self.action_next()
        while self.ahead and self.waiting is None:
            self.ahead -= 1
            self.action_start() if self.step == "review" else self.action_next()

    # --- the task's data ----------------------------------------------------------------

    def _ask_data(self, config: RunConfig, info: Text, shown: list[str], now: bool = False) -> None:
        """Show what is known of the config's data at once, and load the rest in a job."""
        self.task_info, self.task_shown = info, shown
        data = loaded(config)
        if data is not None:
            self.later.forget("data")
            self.later.forget("path")
            return self._show_info(describe_data(data))
        key = data_key(config)
        self._show_info("reading the data…" + (" (Enter moves on when it is read)" if self.waiting else ""))
        if config.data_dir is not None and not now:
            self.later.ask("path", key, lambda: self._look_job(key, config.data_dir), now=True)
        self.later.ask("data", key, lambda: self._data_job(key, config), now)

    def _show_info(self, line: str) -> None:
        self.query_one("#task-info", Static).update(self.task_info + Text("\n" + line if line else ""))

    @in_thread("path")
    def _look_job(self, key: tuple, path: str) -> None:
        answer(self._looked, key, folder_problem(path))

    def _looked(self, key: tuple, problem: str | None) -> None:
        if self.later.took("path", key) and problem and self.later.wanted.get("data") == key:
            self.later.forget("data")
            self._data_failed("data_dir", problem)

    @in_thread("data")
    def _data_job(self, key: tuple, config: RunConfig) -> None:
        answer(self._data_loaded, key, *attempt(lambda: task_data(config)))

    def _data_loaded(self, key: tuple, data, option: str | None, problem: str | None) -> None:
        if not self.later.took("data", key):
            return
        if problem is not None:
            return self._data_failed(option, problem)
        self._show_info(describe_data(data))
        self._advance("task")

    def _data_failed(self, option: str | None, problem: str) -> None:
        """Mark the load's problem on the option it names (the data row when it names none)."""
        spec = catalog("task")[self.choice.task] if self.choice is not None else None
        blamed = option if option in self.task_shown else "data_dir" if spec and spec.reads_data_dir else ""
        self._show_info("")
        self._mark("task", {**self.errors["task"], blamed: problem})
        if self.waiting == "task":
            self._stop_waiting()
            self._refuse("task")

    # --- the model's size ---------------------------------------------------------------

    def _show_parameters(self, errors: dict[str, str], now: bool = False) -> None:
        """Count the valid config's parameters and its memory, in a job; building the model fails
        only in a user's code, and that error is the step's (under the option it names)."""
        if errors:
            self.later.forget("size")
            self._show_size(Text(UNCOUNTED))
        else:
            self._ask_size(self.config, now)

    def _ask_size(self, config: RunConfig, now: bool = False) -> None:
        if config in self.sizes:
            self.later.forget("size")
            return self._show_size(self.sizes[config])
        self._show_size(Text("parameters: counting…"))
        self.later.ask("size", config, lambda: self._count_job(config), now)

    def _show_size(self, text: Text) -> None:
        for place in self.query("#parameters, #size").results(Static):
            place.update(text)

    @in_thread("size")
    def _count_job(self, config: RunConfig) -> None:
        """The model built on the meta device (the user's own code may fail here, or be slow)."""
        answer(self._sized, config, *attempt(lambda: model_size(config)))

    def _sized(self, config: RunConfig, text: Text | None, option: str | None, problem: str | None) -> None:
        if not self.later.took("size", config):
            return
        if problem is not None:
            self._show_size(Text(UNCOUNTED))
            self._mark("model", {**self.errors["model"], option if option in self.model_options else "": problem})
            if self.waiting == "model":
                self._stop_waiting()
                self._refuse("model")
            return
        self.sizes[config] = text
        self._show_size(text)
        self._advance("model")

    def action_pick_folder(self) -> None:
        """The data row's folder picker; the folder chosen is typed into the row."""
        def chosen(path: str | None) -> None:
            if path is not None:
                self._row("data_dir").control.value = path
            self._row("data_dir").control.focus()

        self.app.push_screen(FolderPicker(self._row("data_dir").value), chosen)

    # --- a job that failed (a bug: engine errors and OSErrors are answered) ----------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        group = event.worker.group
        if group not in GROUPS or (problem := failure(event)) is None:
            return
        self.later.running.pop(group, None)  # no answer comes
        self._stop_waiting()
        self._mark(GROUPS[group], {**self.errors[GROUPS[group]], "": problem})


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
            self.query_one(".error", Static).update(Text(printable(f"{path} cannot be written: {exc.strerror or exc}")))
            return
        self.dismiss(path)


class FolderPicker(ModalScreen[str | None]):
    """A folder (or file) chosen from a tree: ↑↓ move, Space opens, Enter chooses, Backspace goes up."""

    DEFAULT_CSS = """
    FolderPicker { align: center middle; }
    FolderPicker > Vertical { width: 76; height: 20; padding: 0 1; border: thick $accent; background: $surface; }
    FolderPicker .hint { color: $text-muted; }
    FolderPicker DirectoryTree { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel"), Binding("backspace", "up", "parent folder")]

    def __init__(self, start: str | None) -> None:
        super().__init__()
        self.start = _existing_folder(start)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Choose the data folder", style="bold"))
            yield Static("↑↓ move · Space opens · Enter chooses · Backspace: the parent · Escape cancels",
                         classes="hint")
            yield DirectoryTree(self.start, id="folders")

    def on_mount(self) -> None:
        self.query_one(DirectoryTree).focus()

    def action_up(self) -> None:
        tree = self.query_one(DirectoryTree)
        tree.path = Path(tree.path).resolve().parent

    @on(DirectoryTree.DirectorySelected)
    @on(DirectoryTree.FileSelected)
    def _chosen(self, event) -> None:
        self.dismiss(str(event.path))


def _existing_folder(path: str | None) -> Path:
    """The nearest folder that exists at or above ``path`` (the working folder when none is typed).
    Only the picker's start: the tree lists folders in its own thread."""
    here = Path(os.path.expanduser(path)).absolute() if path else Path.cwd()
    for folder in (here, *here.parents):
        if folder.is_dir():
            return folder
    return Path.cwd()
