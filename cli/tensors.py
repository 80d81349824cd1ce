"""Rich rendering of what ``inspect`` found in a model file: the tensor tree, its statistics,
the file's values, optimizer and scheduler states, signature and notes.

Names come from the file, so each is shown as Text with control characters escaped (cli.show).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from cli.show import _row, _table, _text, console
from engine.store.modelfiles import FORMATS
from engine.text import fmt, size_text

MAX_FACTS = 40  # --json has them all


def _short(kind: str) -> str:
    return kind.rpartition(".")[2]


def tree_table(info: dict[str, Any]) -> None:
    """The tensor tree, a row per module path and tensor, indented by depth; a module's row
    carries its class where the file names it, and its subtree's totals. With --stats, a table
    of each tensor's statistics follows."""
    modules = info.get("modules") or {}
    table = _table(f"tensors{' at ' + info['weights_at'] if info.get('weights_at') else ''}",
                   "name", "shape or layer", "dtype", "parameters", "size")
    for level, node in _rows(info["tree"]):
        if "shape" in node:
            name, what = _text("  " * level + node["name"]), "×".join(map(str, node["shape"])) or "scalar"
        else:
            name = _text("  " * level + node["name"], "bold")
            what = _short(modules[node["path"]]) if node["path"] in modules else f"{node['tensors']} tensors"
        _row(table, name, what, node.get("dtype", ""), f"{node['parameters']:,}", size_text(node["bytes"]))
    root = info["tree"]
    _row(table, _text("total", "bold"), f"{root['tensors']} tensors", "", _text(f"{root['parameters']:,}", "bold"),
         size_text(root["bytes"]))
    console.print(table)
    if info.get("stats"):
        stats_table(info["stats"])


def stats_table(stats: dict[str, dict[str, Any]]) -> None:
    table = _table("statistics", "tensor", "min", "max", "mean", "std", "NaN", "Inf", "zeros")
    for name, found in stats.items():
        if "error" in found:
            _row(table, name, _text(found["error"], "red"), "", "", "", "", "", "")
            continue
        _row(table, name, *(_number(found[key]) for key in ("min", "max", "mean", "std")),
             _text(found["nan"], "red" if found["nan"] else ""), _text(found["inf"], "red" if found["inf"] else ""),
             f"{found['zeros']:.1%}")
    console.print(table)


def _rows(node: dict[str, Any], level: int = 0):
    for child in node.get("children", []):
        yield level, child
        yield from _rows(child, level + 1)


def model_file(info: dict[str, Any]) -> None:
    """A file of any format: what it is, its values, states and signature, then its tensors."""
    console.print(Text.assemble(_text(info["path"], "bold"), "  ", _text(FORMATS[info["format"]])))
    console.print(_text(f"{info['parameters']:,} parameters · {size_text(info['bytes'])} of weights"))
    for note in info["notes"]:
        console.print(_text(note, "yellow"))
    if info["globals"]:
        console.print(_text(f"it would import: {', '.join(info['globals'])}", "red"))
    extras(info)
    tree_table(info)


def extras(info: dict[str, Any]) -> None:
    """The parts beside the weights: values, optimizers, schedulers, signature, other tensors."""
    facts = info["facts"]
    if facts:
        table = _table("values" if len(facts) <= MAX_FACTS else f"values (first {MAX_FACTS} of {len(facts)}; "
                       f"--json has all)", "key", "value")
        for key, value in list(facts.items())[:MAX_FACTS]:
            _row(table, key, value if isinstance(value, str) else fmt(value))
        console.print(table)
    for optimizer in info["optimizers"]:
        more = "  ".join(f"{key} {optimizer[key]}" for key in ("betas", "momentum", "weight_decay") if key in optimizer)
        console.print(_text(
            f"optimizer {optimizer['kind']} ({optimizer['at'] or 'top level'}) · {optimizer['groups']} groups · "
            f"{optimizer['parameters']} parameters · step {fmt(optimizer['step'])} · lr "
            f"{', '.join(fmt(lr) for lr in optimizer['lr'])}  {more} · state {', '.join(optimizer['state']) or 'none'} "
            f"({size_text(optimizer['state_bytes'])})"))
    for scheduler in info["schedulers"]:
        console.print(_text(f"scheduler {scheduler['kind']} ({scheduler['at'] or 'top level'}) · last epoch "
                            f"{scheduler['last_epoch']} · last lr {scheduler['last_lr']}"))
    for side in ("inputs", "outputs"):
        for item in info[side]:
            kind = item.get("type") or f"{'×'.join(map(str, item.get('shape', [])))} {item.get('dtype', '')}"
            console.print(_text(f"{side[:-1]:<7} {item['name']}: {kind}"))
    for where, tensors in info["more"].items():
        console.print(_text(f"also at {where}: {len(tensors)} tensors, "
                            f"{size_text(sum(t['bytes'] for t in tensors))}", "dim"))


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
