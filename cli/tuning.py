"""The commands that tune a run before it trains: ``lr-find``, the learning-rate range test.

Its options are ``train``'s (one flag per RunConfig field, from ``with_run_options``), so the
test builds the very data, model, loss and optimizer the run would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from cli.common import _json, with_run_options
from engine.config import RunConfig
from engine.text import printable


@with_run_options
def lr_find(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file of options; flags override it"),
    json_output: bool = typer.Option(False, "--json", help="print the rates, losses and suggestions as JSON"),
    start: float = typer.Option(1e-7, "--start", help="the learning rate of the first batch"),
    end: float = typer.Option(10.0, "--end", help="the learning rate of the last batch"),
    batches: int = typer.Option(100, "--batches", help="the most batches the test trains (the train split's, "
                                "cycled)"),
    **options,
) -> None:
    """Find a learning rate: train a throw-away copy of the model for a few batches while the
    rate grows from --start to --end, and suggest where the loss falls fastest (fastai's valley
    rule, or the steepest descent). Nothing is saved; the options are train's."""
    flags = {key: value for key, value in options.items() if value is not None}
    values = RunConfig.read_toml(config) if config is not None else {}
    run_config = RunConfig.from_values({**values, **flags})
    for warning in run_config.ignored(flags):
        print(f"torchdeck: warning: {printable(warning)}", file=sys.stderr)
    from engine.train.lrfind import find_lr

    found = find_lr(run_config, start=start, end=end, batches=batches)
    if json_output:
        _json({**found.to_dict(), "lr": run_config.lr})
        return
    if sys.stdout.isatty() and found.lrs:
        _chart(found)
    for line in report(found, run_config.lr):
        print(line)


def report(found, current: float) -> list[str]:
    """The plain lines of a range test's result; ``current``: the lr the options give now."""
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.3g}"

    lines = [f"suggested learning rate: {rate(found.suggestion)}" if found.suggestion is not None
             else "no learning rate suggested",
             f"  how: {found.rule}",
             f"  steepest descent: {rate(found.steepest)} · valley: {rate(found.valley)} · now: --lr {current:g}",
             f"  {len(found.lrs)} batches, from lr {rate(found.lrs[0] if found.lrs else None)}; {found.stopped}"]
    if found.suggestion is not None:
        lines.append(f"  train with it: --lr {found.suggestion:.3g}")
    return lines


def _chart(found, width: int = 80, height: int = 18) -> None:
    """The smoothed loss against the learning rate (log scale), the suggestion marked."""
    import plotext

    rates, losses, ticks = found.chart()
    plotext.clear_figure()
    plotext.theme("clear")
    plotext.plotsize(min(width, plotext.terminal_width() or width), height)
    plotext.xscale("log")
    plotext.xticks(ticks, [f"{tick:.0e}" for tick in ticks])
    plotext.title("smoothed loss by learning rate")
    plotext.xlabel("learning rate")
    plotext.plot(rates, losses, color="blue", marker="braille")
    if found.suggestion is not None:
        plotext.vline(found.suggestion, "red")
    print(plotext.build())
