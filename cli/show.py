"""Rich rendering of catalogs, run descriptions, evaluations and predictions.

On a terminal these are coloured tables; piped, Rich drops the colour codes and the same
tables stay readable in a file. Every name and value is printed as Rich ``Text`` with its
control characters escaped, never read as markup: a class ``[/]``, a column ``weight [kg]`` or a
file name holding ``ESC [2J`` is data, shown as given.
"""

from __future__ import annotations

import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.text import fmt, metrics_text, printable

console = Console(markup=False)  # a string that slips past _text is still not markup
HISTORY_ROWS = 20


def _text(value: Any, style: str = "") -> Text:
    """A value as shown: literal text, control characters escaped."""
    return Text(printable(str(value)), style=style)


def _table(title: str | None, *columns: str, **kwargs) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", title_style="bold", **kwargs)
    for column in columns:
        table.add_column(_text(column))
    return table


def _row(table: Table, *cells: Any) -> None:
    table.add_row(*(cell if isinstance(cell, Text) else _text(cell) for cell in cells))


def catalogs(which: list[str]) -> None:
    from engine.config import catalog

    singular = {"tasks": "task", "models": "model", "optimizers": "optimizer", "schedulers": "scheduler",
                "losses": "loss", "activations": "activation"}
    for name in which:
        entries = catalog(singular[name])
        if name == "tasks":
            table = _table("tasks", "name", "kind", "description", "source")
            for entry in entries.values():
                _row(table, _text(entry.name, "cyan"), entry.kind, entry.description, entry.source)
        elif name == "losses":
            table = _table("losses (auto follows the task kind)", "name", "for", "description")
            for entry in entries.values():
                _row(table, _text(entry.name, "cyan"), ", ".join(entry.kinds), entry.description)
        elif name == "activations":
            table = _table(name, "name", "description")
            for entry in entries.values():
                _row(table, _text(entry.name, "cyan"), entry.description)
        else:
            table = _table(name, "name", "description", "options")
            for entry in entries.values():
                _row(table, _text(entry.name, "cyan"), entry.description,
                     ", ".join(o.replace("_", "-") for o in entry.options))
        console.print(table)
        if name == "models":
            _more_models()


def _more_models() -> None:
    """The models beyond the catalog's: torchvision's classifiers by name, and the user's own."""
    from engine.train import vision

    console.print(Text(f"torchvision classification models (options weights, freeze): "
                       f"{', '.join(vision.names())}", style="dim"))
    console.print(Text("your own: --model FILE.py:NAME or package.module:NAME, an nn.Module class or a function "
                       "returning one, with --model-args '{...}'", style="dim"))


def history_table(history: list[dict[str, Any]], title: str = "history") -> Table:
    names = list(history[0]["metrics"]) if history else []
    table = _table(title, "epoch", "train_loss", "val_loss", *names, "lr", "seconds")
    for row in history:
        _row(table, row["epoch"], fmt(row["train_loss"]), fmt(row["val_loss"]),
             *(fmt(row["metrics"][n]) for n in names), f"{row['lr']:.3g}", f"{row['seconds']:.2f}")
    return table


def description(info: dict[str, Any]) -> None:
    saved = datetime.datetime.fromtimestamp(info["saved_at"]).strftime("%Y-%m-%d %H:%M:%S") if info["saved_at"] else "?"
    why = f" ({info['reason']})" if info.get("reason") else ""
    console.print(Text.assemble(_text(info["run_dir"] or info["path"], "bold"), "  status ",
                                _text(info["status"] or "n/a", "bold"), _text(why)))
    if info.get("message"):
        console.print(_text(info["message"], "red"))
    console.print(_text(
        f"task {info['task']} ({info['kind']}) · epoch {info['epoch']}/{info['epochs']} · "
        f"step {info['global_step']} · {info['parameters']:,} parameters · saved {saved}"
    ))
    best, last, test = info["best"], info["last"], info["test"]
    if best:
        console.print(_text(f"best  {best['monitor']} {fmt(best['value'])} at epoch {best['epoch']}"))
    if last:
        console.print(_text(f"last  train_loss {fmt(last['train_loss'])}  val_loss {fmt(last['val_loss'])}  "
                            f"{metrics_text(last['metrics'])}"))
    if test:
        console.print(_text(f"test  {metrics_text(test)}"))
    config = _table("config", "option", "value")
    for key, value in info["config"].items():
        _row(config, key, value)
    console.print(config)
    if info["features"]:
        console.print(_text(f"features  {', '.join(info['features'])}"))
    if info["classes"]:
        console.print(_text(f"classes   {', '.join(info['classes'])}"))
    history = info["history"]
    if history:
        shown = history[-HISTORY_ROWS:]
        title = "history" if len(shown) == len(history) else (
            f"history (last {len(shown)} of {len(history)} epochs; --json has all)")
        console.print(history_table(shown, title))
    files = _table("files", "name", "bytes")
    for name, size in (info["files"] or {info["path"]: info["file_size"]}).items():
        _row(files, name, f"{size:,}")
    console.print(files)
    console.print(_text("versions  " + "  ".join(f"{k} {v}" for k, v in info["versions"].items())))


def evaluation(result: dict[str, Any]) -> None:
    console.print(Text.assemble(_text(result["path"], "bold"),
                                _text(f" on the {result['split']} split ({result['samples']} samples)")))
    console.print(_text(f"loss {fmt(result['loss'])}  {metrics_text(result['metrics'])}"))
    if "confusion_matrix" not in result:
        return
    names = result["classes"]
    matrix = _table("confusion matrix", "true \\ predicted", *names)
    for name, row in zip(names, result["confusion_matrix"]):
        _row(matrix, _text(name, "bold"), *row)
    console.print(matrix)
    report = _table("classification report", "class", "precision", "recall", "f1-score", "support")
    for name, scores in result["report"].items():
        if isinstance(scores, dict):
            _row(report, name, fmt(scores["precision"]), fmt(scores["recall"]), fmt(scores["f1-score"]),
                 int(scores["support"]))
    console.print(report)


def predictions(items: list[dict[str, Any]], meta) -> None:
    if meta.kind == "regression":
        table = _table(None, "input", "prediction")
        for item in items:
            _row(table, _input_text(item["input"]), fmt(item["value"]))
    else:
        table = _table(None, "input", "class", "top classes")
        for item in items:
            top = "  ".join(f"{t['class']} {t['probability']:.1%}" for t in item["top"])
            _row(table, _input_text(item["input"]), _text(item["class"], "bold"), top)
    console.print(table)


def _input_text(given: list[float | str] | str) -> str:
    """An input as shown: the feature values (text cells of a csv task as given), or an image's path."""
    if isinstance(given, str):
        return given
    text = ", ".join(v if isinstance(v, str) else f"{v:g}" for v in given)
    return text if len(text) <= 40 else text[:37] + "..."


DIFF_ROWS = 20


def difference(result: dict[str, Any], show_all: bool = False) -> None:
    """``diff``: the two files, a summary line, then what is in one file only, what changed shape
    or dtype and which values differ, largest relative change first (DIFF_ROWS of each unless --all)."""
    for side in ("a", "b"):
        console.print(Text.assemble(_text(f"{side.upper()}  "), _text(result[side]["path"], "bold"),
                                    _text(f"  ({result[side]['format']})")))
    differ = sorted((c for c in result["common"] if c["max_abs_diff"] or c["nan_mismatch"]),
                    key=lambda c: (c["rel_rms"], c["max_abs_diff"], c["nan_mismatch"]), reverse=True)
    console.print(_text(f"{result['equal_tensors']} tensors equal, {result['different_tensors']} differ, "
                        f"{len(result['only_a'])} only in A, {len(result['only_b'])} only in B",
                        "bold green" if result["equal"] else "bold"))
    for side in ("a", "b"):
        if result[f"only_{side}"]:
            title, names = _limited(f"only in {side.upper()}", result[f"only_{side}"], show_all)
            table = _table(title, "name")
            for name in names:
                _row(table, name)
            console.print(table)
    if result["changed"]:
        title, items = _limited("shape or dtype changed", result["changed"], show_all)
        table = _table(title, "name", "A", "B")
        for item in items:
            _row(table, item["name"], f"{_dims(item['a_shape'])} {item['a_dtype']}",
                 f"{_dims(item['b_shape'])} {item['b_dtype']}")
        console.print(table)
    if differ:
        title, items = _limited("values differ (largest relative change first)", differ, show_all)
        nans = any(c["nan_mismatch"] for c in differ)
        table = _table(title, "name", "shape", "max |a-b|", "relative RMS", *(["NaN in one only"] if nans else []))
        for item in items:
            _row(table, item["name"], _dims(item["shape"]), fmt(item["max_abs_diff"]),
                 fmt(item["rel_rms"]), *([f"{item['nan_mismatch']:,}"] if nans else []))
        console.print(table)


def _limited(title: str, items: list, show_all: bool) -> tuple[str, list]:
    """A table's title and rows: DIFF_ROWS of them unless --all, the title saying how many there are."""
    if show_all or len(items) <= DIFF_ROWS:
        return title, items
    return f"{title} (first {DIFF_ROWS} of {len(items)}; --all shows every one)", items[:DIFF_ROWS]


def _dims(shape: list[int]) -> str:
    return "×".join(map(str, shape)) or "scalar"


CURVE_COLOURS = ("blue", "red", "green", "magenta", "cyan", "yellow")  # named alike in plotext and Rich


def run_list(runs: list[dict[str, Any]]) -> None:
    """``torchdeck runs``: one row per run summary (engine.store.runs.summary)."""
    table = _table(f"{len(runs)} runs", "name", "task", "model", "status", "epochs", "monitor", "best", "test",
                   "duration", "started")
    for run in runs:
        _row(table, _text(run["name"], "cyan"), run["task"], run["model"], run["status"],
             f"{run['epochs_done']}/{run['epochs']}", run["best"].get("monitor", ""), _best(run), _test(run),
             _duration(run["seconds"]), datetime.datetime.fromtimestamp(run["started"]).strftime("%Y-%m-%d %H:%M"))
    _print_wide(table)


def comparison(result: dict[str, Any]) -> None:
    """``torchdeck compare``: the options that differ, best and test metrics, duration, best first."""
    differing, monitor = result["differing"], result["monitor"]
    tests = list(dict.fromkeys(name for run in result["runs"] for name in run["test"]))
    table = _table("runs, best first" + ("" if differing else " (their options are the same)"),
                   "name", *differing, "status", f"best {monitor}" if monitor else "best",
                   *(f"test {name}" for name in tests), "duration")
    for run in result["runs"]:
        best = _best(run) if monitor or not run["best"] else f"{run['best']['monitor']} {_best(run)}"
        _row(table, _text(run["name"], "cyan"), *(_option(run["options"][key]) for key in differing),
             run["status"], best, *(fmt(run["test"].get(name)) for name in tests), _duration(run["seconds"]))
    _print_wide(table)


def loss_chart(runs: list[dict[str, Any]], width: int = 80, height: int = 20) -> None:
    """The validation loss of each run by epoch as a plotext chart, its legend below the plot
    (printed as text: a run name never reaches plotext)."""
    import plotext

    plotext.clear_figure()
    plotext.theme("clear")
    plotext.plotsize(min(width, console.width), height)
    plotext.title("validation loss")
    plotext.xlabel("epoch")
    legend = Text()
    for number, run in enumerate(runs):
        colour = CURVE_COLOURS[number % len(CURVE_COLOURS)]
        points = [(row["epoch"], row["val_loss"]) for row in run["history"] if row["val_loss"] is not None]
        if points:
            plotext.plot(*zip(*points), color=colour, marker="braille")
        legend.append("━━ ", style=colour).append(_text(run["name"])).append("   ")
    print(plotext.build())
    console.print(legend)


def _print_wide(table: Table) -> None:
    """A table of runs, whose every name is shown whole: piped, as wide as it needs (up to 200
    columns) rather than Rich's 80; on a terminal, its width."""
    table.columns[0].overflow = "fold"  # a run is known by its whole name
    (console if console.is_terminal else Console(markup=False, width=200)).print(table)


def _best(run: dict[str, Any]) -> str:
    best = run["best"]
    return f"{fmt(best['value'])} @{best['epoch']}" if best else "n/a"


def _test(run: dict[str, Any]) -> str:
    """The test value of the run's monitored metric (the loss when it monitors val_loss)."""
    monitor = run["best"].get("monitor", "")
    name = "loss" if monitor == "val_loss" else monitor
    return fmt(run["test"][name]) if name in run["test"] else "n/a"


def _option(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else "n/a" if value is None else str(value)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.0f}s" if seconds < 60 else f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 \
        else f"{minutes}m{rest:02d}s"
