"""What the run browser shows of one run: its row in the list and the text of its detail tabs.

Plain functions of ``runs.summary`` and ``inspect.describe`` results, so the browser screen
keeps to its widgets and jobs. The overview is sized for an 80×24 terminal: one line each for
features and classes (cut with "…"); the full lists sit in the checkpoint tab. Every name
comes from a run folder, so it is shown as text (``plain``), never as markup.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from engine.text import fmt, metrics_text, printable
from tui.widgets import plain

STATUS_STYLE = {"finished": "green", "stopped": "yellow", "failed": "red", "running": "bold cyan"}
COLUMNS = ("run", "task", "model", "epochs", "best", "status", "started")
NAME_WIDTH = 24  # the longest run name the list shows whole: a default name is task-model-date-time


def date_text(timestamp: float | None, short: bool = False) -> str:
    """A time as the list (``short``: no year) or the details show it."""
    if not timestamp:
        return "?"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M")


def _best_text(best: dict[str, Any]) -> str:
    return f"{best['monitor']} {fmt(best['value'])}" if best else "–"


def _status_text(run: dict[str, Any]) -> Text:
    return Text(run["status"], style=STATUS_STYLE.get(run["status"], ""))


def row(run: dict[str, Any]) -> tuple[str | Text, ...]:
    """The cells of a run in the list, in the order of COLUMNS (names as text: a table reads a
    plain string as markup)."""
    return (plain(run["name"]), plain(run["task"]), plain(run["model"]), f"{run['epochs_done']}/{run['epochs']}",
            _best_text(run["best"]), _status_text(run), date_text(run["started"], short=True))


def heading(run: dict[str, Any]) -> Text:
    """The run in two or three lines: name and status, what it is and how far it got, why it failed."""
    text = Text.assemble(plain(run["name"], "bold"), "  ", _status_text(run))
    if run["reason"]:
        text.append(printable(f" ({run['reason']})"))
    text.append(f" · started {date_text(run['started'])}\n")
    facts = [f"task {run['task']}", f"model {run['model']}"]
    if run["parameters"]:
        facts.append(f"{run['parameters']:,} parameters")
    facts.append(f"epoch {run['epochs_done']}/{run['epochs']}")
    best = run["best"]
    facts.append(f"best {_best_text(best)} at epoch {best['epoch']}" if best else "no best epoch yet")
    text.append(printable(" · ".join(facts)))
    if run["message"]:
        text.append("\n" + printable(run["message"]), style="red")
    return text


def _names(label: str, names: list[str]) -> Text:
    return Text.assemble((f"{label}  ", "dim"), printable(", ".join(names)))


def _one_line(text: Text) -> Text:
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def checkpoint_text(info: dict[str, Any]) -> RenderableType:
    """What only the checkpoint knows: when it was saved, the last epoch, the test scores, the data."""
    lines = [f"{Path(info['path']).name} saved {date_text(info['saved_at'])} · step {info['global_step']}"]
    if info["last"]:
        last = info["last"]
        lines.append(f"last   train_loss {fmt(last['train_loss'])}  val_loss {fmt(last['val_loss'])}  "
                     f"{metrics_text(last['metrics'])}")
    if info["test"]:
        lines.append(f"test   {metrics_text(info['test'])}")
    parts: list[RenderableType] = [Text("\n".join(map(printable, lines)))]
    parts.append(_one_line(_names(f"{len(info['features'])} features", info["features"])))
    if info["classes"]:
        parts.append(_one_line(_names(f"{len(info['classes'])} classes", info["classes"])))
    return Group(*parts)


def overview(run: dict[str, Any], detail: RenderableType) -> RenderableType:
    return Group(heading(run), Text(), detail)


def config_text(run: dict[str, Any]) -> RenderableType:
    """The run's settings as ``key value`` pairs in as many columns as fit."""
    pairs = [Text.assemble(plain(f"{key} ", "dim"), plain(value)) for key, value in run["config"].items()]
    return Group(Text("config", style="bold"), Columns(pairs, padding=(0, 2)))


def checkpoint_tables(info: dict[str, Any]) -> RenderableType:
    """The features and classes in full, then the model's layers and the run directory's files,
    side by side where they fit."""
    layers = Table(title="layers", title_justify="left", box=box.SIMPLE_HEAD)
    for column, justify in (("name", "left"), ("shape", "left"), ("parameters", "right")):
        layers.add_column(column, justify=justify)
    for layer in info["layers"]:
        layers.add_row(plain(layer["name"]), "×".join(map(str, layer["shape"])), f"{layer['parameters']:,}")
    layers.add_row(Text("total", style="bold"), "", Text(f"{info['parameters']:,}", style="bold"))
    files = Table(title="files", title_justify="left", box=box.SIMPLE_HEAD)
    files.add_column("name")
    files.add_column("bytes", justify="right")
    for name, size in info["files"].items():
        files.add_row(plain(name), f"{size:,}")
    names = [_names("features", info["features"])]
    if info["classes"]:
        names.append(_names("classes", info["classes"]))
    return Group(*names, Text(), Columns([layers, files], padding=(0, 2)))
