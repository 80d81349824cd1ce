"""``torchdeck sweep``: trials of one config with options drawn by Optuna (engine.use.sweep).

One plain line per finished trial (or one JSON object with ``--json``), then the best trial's
options and the ``torchdeck train`` command that repeats it. Ctrl+C, SIGTERM and SIGHUP stop the
running trials (they save as runs do) and print the command that resumes the sweep.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from cli.common import with_run_options
from engine.errors import TorchdeckError
from engine.text import printable


@with_run_options
def sweep(
    trials: Optional[int] = typer.Option(None, "--trials", "-n", min=1, help="trials to finish (complete or pruned) "
                                         "in all; with --resume, a new total (default: the sweep's own)"),
    param: Optional[list[str]] = typer.Option(
        None, "--param", "-p", help="an option to search: lr=1e-4..1e-1:log (a range, log scale), dropout=0..0.5, "
        "epochs=5..20 (whole numbers), optimizer=adam,sgd or hidden=64,128 (choices; 16,8|32,16 for layer lists)"),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="trials trained at once in this process; more processes "
                             "may work on one sweep with --resume"),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file of the trials' options"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="go on with the sweep in this folder (after a "
                                          "stop or a kill; re-runs the trials that were cut short)"),
    json_lines: bool = typer.Option(False, "--json", help="print each finished trial, then the best, as JSON lines"),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="a database URL (postgresql://…, mysql://…) for a study several machines share; "
        "given again with --resume (default: study.db in the sweep folder)"),
    tui: bool = typer.Option(False, "--tui", help="watch the trials in the TUI's live leaderboard while they train "
                             "(q stops them; --resume goes on)"),
    **options,
) -> None:
    """Search hyperparameters: train --trials runs (Optuna's TPE, a median pruner on the epochs'
    validation numbers), each a run directory in the sweep's folder (--out, --name)."""
    from cli import signals
    from engine.config import RunConfig, command_line
    from engine.use import sweep as sweeping

    flags = {key: value for key, value in options.items() if value is not None}
    sweeping.optuna().logging.set_verbosity(sweeping.optuna().logging.ERROR)  # the lines below say it all
    if resume is not None:
        if flags or param or config is not None:
            raise TorchdeckError("--resume goes on with the sweep's own options; only --trials, --jobs and --storage "
                                 "may be given")
        study = sweeping.Sweep.open(resume, trials, storage=storage)
    else:
        if trials is None:
            raise TorchdeckError("--trials: how many trials should the sweep finish? e.g. --trials 20")
        values = RunConfig.read_toml(config) if config is not None else {}
        base = RunConfig.from_values({**values, **flags})
        study = sweeping.Sweep.create(base, list(param or ()), trials, out=base.out, name=flags.get("name"),
                                      storage=storage)
    show = _json_line if json_lines else _plain_line
    if not json_lines:
        print(f"sweep {printable(str(study.folder))}: {study.trials} trials, by {study.monitor} ({study.direction})")
    received: list[int] = []
    first_at = [0.0]

    def stop(signum, frame) -> None:
        """The first signal stops the trials, which save; another, a second later, quits at once
        (checkpoints are written atomically, and the storage has its heartbeats)."""
        if received and time.monotonic() - first_at[0] >= signals.stop_on_signals.REPEAT_AFTER:
            os._exit(128 + signum)
        if not received:
            first_at[0] = time.monotonic()
        received.append(signum)
        study.stop(f"received {signal.Signals(signum).name}")

    previous = signals._install(stop)
    try:
        _in_tui(study, jobs) if tui else study.run(jobs, on_trial=show)
    except sweeping.SweepStopped:
        print(f"torchdeck: sweep stopped; go on with: torchdeck sweep --resume {shlex.quote(str(study.folder))}",
              file=sys.stderr)
        raise typer.Exit(128 + (received[0] if received else signal.SIGINT))
    finally:
        signals._restore(previous)
    best = study.best()
    command = command_line(study.trial_config(best)) if best else None
    if json_lines:
        print(json.dumps({"best": _jsonable(best) if best else None, "command": command}), flush=True)
    elif best:
        score = f"{study.monitor} {best['value']:.4f}"
        print(printable(f"best: trial {best['number']} ({score}): {_params(best['params'])}"))
        print(f"  {printable(command)}")
    else:
        print("no trial completed")


def _in_tui(study, jobs: int) -> None:
    """The trials train in a thread while the app shows the sweep's leaderboard (tui.sweep, read
    from the study's storage); leaving the app stops the trials that are still training."""
    import threading

    from cli.common import run_app

    outcome: list[BaseException] = []

    def train() -> None:
        try:
            study.run(jobs)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread as it is
            outcome.append(exc)

    worker = threading.Thread(target=train, name="torchdeck-sweep", daemon=True)
    worker.start()
    try:
        run_app(out=study.folder, sweep=study.folder, sweep_storage=study.storage)
    finally:
        if worker.is_alive():
            study.stop("the TUI closed")
        worker.join()
    if outcome:
        raise outcome[0]


def _params(params: dict) -> str:
    return " ".join(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
                    for name, value in params.items())


def _plain_line(row: dict) -> None:
    value = "-" if row["value"] is None else f"{row['value']:.4f}"
    line = f"trial {row['number']:>4}  {row['state']:<8}  {value:>8}  {_params(row['params'])}  {row['run_dir'] or '-'}"
    if row["message"]:
        line += f"  ({row['message']})"
    print(printable(line), flush=True)


def _jsonable(row: dict) -> dict:
    return {**row, "run_dir": str(row["run_dir"]) if row["run_dir"] else None}


def _json_line(row: dict) -> None:
    print(json.dumps(_jsonable(row)), flush=True)
