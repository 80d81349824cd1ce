"""How much longer the same run takes on the TUI dashboard than headless.

Runs one config alternately headless (events consumed by the CLI's plain reporter, output
discarded) and on the dashboard (Textual's headless driver, which composes every frame as a
terminal would), and prints the wall time between run_started and run_finished of each, the
median of the repeats and the ratio.

    python bench/tui_vs_headless.py [--task digits] [--epochs 150] [--batch-size N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile

from cli.report import PlainReporter
from engine.config import RunConfig
from engine.train.run import Run


def headless(config: RunConfig) -> float:
    run = Run.new(config).start()
    reporter = PlainReporter(out=io.StringIO(), err=io.StringIO())
    events = []
    for event in run.events:
        reporter(event)
        events.append(event)
    run.wait()
    return events[-1].time - events[0].time


def on_dashboard(config: RunConfig, size: tuple[int, int]) -> float:
    from tui.app import TorchdeckApp
    from tui.dashboard import DashboardScreen

    app = TorchdeckApp(out=config.out)
    app.new_run = lambda config_=None: app.start_run(config)  # open straight on the dashboard

    async def drive() -> float:
        async with app.run_test(size=size):
            while True:
                await asyncio.sleep(0.2)
                screen = app.screen
                if isinstance(screen, DashboardScreen) and screen.ended is not None:
                    return screen.ended.time - screen.started.time

    return asyncio.run(drive())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--batch-size", type=int, help="default: the task preset's")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        sizes = {"batch_size": args.batch_size} if args.batch_size else {}
        config = RunConfig.for_task(args.task, epochs=args.epochs, out=out, **sizes)
        times = {"headless": [], "tui": []}
        for _ in range(args.repeats):
            times["headless"].append(headless(config))
            times["tui"].append(on_dashboard(config, (120, 36)))
    for name, values in times.items():
        print(f"{name:9} median {statistics.median(values):.2f}s  runs {', '.join(f'{v:.2f}' for v in values)}")
    ratio = statistics.median(times["tui"]) / statistics.median(times["headless"])
    print(f"tui/headless {ratio:.3f}  ({args.task}, {args.epochs} epochs, batch size {config.batch_size}, "
          f"{args.repeats} repeats)")


if __name__ == "__main__":
    main()
