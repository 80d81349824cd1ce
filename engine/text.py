"""Plain-text formatting that both faces use: numbers, metrics, the one-line story of a run's
start and end, and the first line of an exception.

The CLI prints these lines and the TUI shows them, so a run reads the same in a log, a
terminal and the dashboard. Nothing here imports torch, Rich or Textual.
"""

from __future__ import annotations

import re
from typing import Any

from engine.events import RunFinished, RunStarted, RunStopped

# C0, DEL and C1 controls, the Unicode line and paragraph separators, and the bidirectional
# marks, embeddings, overrides and isolates (which can make a name read backwards: "Trojan Source").
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each control character written as an escape (``\\x1b``, ``\\u202e``): a name
    or a cell that holds ``ESC [2J``, a newline or a right-to-left override must not clear the
    screen, split a one-line log or make what follows it read backwards."""
    return _CONTROLS.sub(lambda match: _escape(match.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def first_line(exc: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name when it has none:
    what a one-line error quotes of a library's multi-line message."""
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def fmt(value: Any) -> str:
    """A number as a person reads it in a table: 4 decimals, or scientific when tiny."""
    if isinstance(value, float):
        return f"{value:.2e}" if value and not 1e-3 <= abs(value) < 1e6 else f"{value:.4f}"
    return "n/a" if value is None else str(value)


def metrics_text(metrics: dict[str, float]) -> str:
    return "  ".join(f"{name} {fmt(value)}" for name, value in metrics.items())


def started_text(event: RunStarted) -> str:
    config = event.config
    sizes = "/".join(str(event.sizes[s]) for s in ("train", "val", "test"))
    start = f", resuming after epoch {event.start_epoch}" if event.resumed_from else ""
    job = f" × {event.world_size} processes" if event.world_size > 1 else ""
    return (
        f"task {config['task']} · model {config['model']} ({event.parameters:,} parameters) · "
        f"{config['optimizer']} lr {config['lr']:g} · device {event.device}{job} ({event.device_name}) · "
        f"train/val/test {sizes} · {plural(event.epochs, 'epoch')}{start}"
    )


def finished_text(event: RunFinished) -> str:
    best = event.best
    why = "stopped early" if event.reason == "early_stopping" else "finished"
    return (
        f"{why} after {plural(event.epochs_done, 'epoch')} ({event.seconds:.1f}s of training) · "
        f"best {best['monitor']} {fmt(best['value'])} at epoch {best['epoch']} · "
        f"test {metrics_text(event.test)}"
    )


def stopped_text(event: RunStopped) -> str:
    where = (f"at the start of epoch {event.epoch}" if event.batch == 0
             else f"in epoch {event.epoch} after {plural(event.batch, 'batch', 'batches')}")
    return f"stopped ({event.reason}) {where}; state saved to {event.checkpoint}; resume with: {event.resume_command}"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def size_text(size: int) -> str:
    """Bytes in decimal units, as memory is sold and ``free -h --si`` counts: 42.1 GB."""
    number, unit = float(size), "B"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB"):
        if number < 999.95 or unit == "ZB":
            break
        number /= 1000
    return f"{number:.1f} {unit}" if unit != "B" else f"{size} B"
