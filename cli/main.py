"""The ``torchdeck`` command: a thin Typer layer over the engine.

Only Typer and the standard library are imported at module level; torch is imported inside the
commands that train or read checkpoints, so ``torchdeck --help`` starts fast.

Exit codes: 0 done, 1 the run failed or torchdeck met a bug (one line on stderr naming the log
of its traceback), 2 bad input (one line on stderr, no traceback),
128 + signal number when a signal stopped a run (130 for Ctrl+C).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from enum import Enum
from pathlib import Path
from typing import NoReturn, Optional

import typer
from typer import Abort

from cli import reading, sweep, tuning
from cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    _code_option,
    _error,
    one_line,
    run_app,
    with_run_options,
)
from engine.config import RunConfig
from engine.errors import TorchdeckError
from engine.text import printable

try:  # Typer >= 0.29 vendors Click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older Typer with Click installed beside it
    from click.exceptions import ClickException

app = typer.Typer(
    name="torchdeck",
    help="Train, watch and inspect PyTorch models from the terminal.",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from engine import __version__

        print(f"torchdeck {__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """Train, watch and inspect PyTorch models from the terminal. With no command: the TUI."""
    if ctx.invoked_subcommand is None:
        run_app()


@app.command()
def tui(out: Path = typer.Option(Path("checkpoints"), "--out", help="folder of run directories")) -> None:
    """Open the TUI: wizard, live dashboard, checkpoint browser."""
    run_app(out=out)


@app.command()
def watch(run_dir: Path = typer.Argument(..., help="run directory written by `torchdeck train`")) -> None:
    """Open the dashboard on a run started elsewhere; follows it live until it ends."""
    from engine.store import rundir

    if not (run_dir / rundir.EVENTS).is_file():
        raise TorchdeckError(f"{run_dir} is not a torchdeck run directory (it holds no {rundir.EVENTS})")
    run_app(out=run_dir.parent, watch=run_dir)


@app.command()
def browse(path: Path = typer.Argument(Path("checkpoints"), help="folder of run directories, or a model file")) -> None:
    """Open the checkpoint browser on a folder of runs, or the tensors of one model file (torch.save,
    TorchScript, safetensors or ONNX; a folder holding model.safetensors.index.json too)."""
    # engine.store.modelfiles.INDEX by name: that module imports torch, which the run browser does without
    if path.is_file() or (path / "model.safetensors.index.json").is_file():
        run_app(out=path.parent, inspect=path)
    elif (path / "sweep.toml").is_file():  # engine.use.sweep.SETTINGS: a sweep's leaderboard
        run_app(out=path, sweep=path)
    else:
        run_app(out=path, browse=True)


@app.command()
@with_run_options
def train(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML file of options; flags override it"),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="continue a run: its directory or a .pt file (only --epochs, --device, "
        "--patience, --min-delta, --save-every, --amp, --compile and --log may change; a .pt file outside a run "
        "directory resumes into --out)"
    ),
    code_files: Optional[list[Path]] = _code_option(),
    json_lines: bool = typer.Option(False, "--json", help="print every event as one JSON object per line"),
    nproc: Optional[int] = typer.Option(
        None, "--nproc", min=1, help="processes training together on this machine (data-parallel through "
        "torch.distributed.run; one per GPU on CUDA); --batch-size stays the global batch"),
    nnodes: int = typer.Option(1, "--nnodes", min=1, help="machines in the job; run the same command on each"),
    node_rank: int = typer.Option(0, "--node-rank", min=0, help="this machine's number in the job (0 writes the run)"),
    rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="HOST:PORT on machine 0 where the "
                                                "machines of a job meet"),
    **options,
) -> None:
    """Train a model. With no options: the Iris classifier preset (torchdeck list tasks)."""
    flags = {key: value for key, value in options.items() if value is not None}
    from cli import launch, signals
    from cli.report import make_reporter, output_may_vanish
    from engine.train.distributed import World
    from engine.train.run import Run

    world = World.from_env()  # torchrun's (rank 0 reports), or this process alone
    with launch.reported(world, _error):
        run_config = None
        if resume is not None and config is not None:
            raise TorchdeckError("--config cannot be combined with --resume: a resumed run keeps its own config")
        if resume is None:
            values = RunConfig.read_toml(config) if config is not None else {}
            run_config = RunConfig.from_values({**values, **flags})
        if nproc is not None or nnodes > 1:
            if world.distributed:
                raise TorchdeckError("--nproc and --nnodes start the job's processes; a process that torchrun "
                                     "started takes neither")
            if run_config is not None:
                World(size=(nproc or 1) * nnodes).check(run_config)
            raise typer.Exit(launch.launch(nproc or 1, nnodes, node_rank, rdzv_endpoint,
                                           launch.worker_args(sys.argv[1:])))
        if resume is not None:
            run = Run.resume(resume, world=world, code=tuple(code_files or ()), **flags).start()
        else:
            if world.is_main:
                for warning in run_config.ignored(flags):
                    print(f"torchdeck: warning: {printable(warning)}", file=sys.stderr)
            run = Run.new(run_config, world).start()
    with output_may_vanish(), signals.stop_on_signals(run) as received:
        reporter = make_reporter(json_lines) if world.is_main else launch.Quiet()
        try:
            for event in run.events:
                reporter(event)
        finally:
            reporter.close()
            run.control.stop("the command ended")
            run.wait()
    result = run.result
    code = 0
    if result is None or result.name == "run_failed":
        code = EXIT_FAILED
    elif result.name == "run_stopped":
        code = 128 + (received[0] if received else signal.SIGINT)
    launch.leave(world, run, code)  # a process of a job ends here
    if code:
        raise typer.Exit(code)


class Catalogs(str, Enum):
    tasks = "tasks"
    models = "models"
    optimizers = "optimizers"
    schedulers = "schedulers"
    losses = "losses"
    activations = "activations"


@app.command("list")
def list_(what: Optional[Catalogs] = typer.Argument(None, help="which catalog (default: all)")) -> None:
    """List the tasks, models, optimizers, schedulers, losses and activations on offer."""
    from cli import show

    show.catalogs([what.value] if what else [c.value for c in Catalogs])


for _command in (reading.inspect, reading.diff, reading.evaluate, reading.predict, reading.export, reading.runs,
                 reading.compare):
    app.command()(_command)
app.command("lr-find")(tuning.lr_find)
app.command()(sweep.sweep)


def main() -> None:
    """Console entry point: every user error becomes one line on stderr and exit status 2; a bug
    (any other exception) one line naming the log that keeps its traceback, and exit status 1."""
    # Until a command installs its own handling, Ctrl+C (even during the imports) just quits,
    # unless the process was started with it ignored.
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="torchdeck", standalone_mode=False)
    except ClickException as exc:
        _error(exc.format_message())
        code = EXIT_BAD_INPUT
    except TorchdeckError as exc:
        _error(str(exc))
        code = EXIT_BAD_INPUT
    except Abort:
        code = 130
    except BrokenPipeError:
        code = EXIT_FAILED
    except Exception as exc:  # a bug: one line here, the traceback in a log to report
        from engine.store import errorlog

        print(f"torchdeck: {printable(one_line(errorlog.report(exc)))}", file=sys.stderr)
        code = EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    sys.exit(code or 0)


def command() -> NoReturn:
    """The ``torchdeck`` command itself (its console script, ``python -m cli``): :func:`main`, then
    the quick exit of :func:`leave`. Callers of ``main`` in their own process get its SystemExit."""
    try:
        main()
    except SystemExit as done:
        leave(done.code)


def leave(code: object) -> NoReturn:
    """Exit with ``code``; once torch is loaded, without Python's teardown of every module and
    object, which then took 1.2-1.4 s after a run's last event, when everything the command
    writes is already written, fsynced and closed. Output streams and logs are flushed first;
    a thread still working (none should be) gets the usual exit, which waits for it."""
    alone = all(thread.daemon or thread is threading.main_thread() for thread in threading.enumerate())
    if "torch" not in sys.modules or not alone or not isinstance(code, int):
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that left, a stream already closed
            pass
    logging.shutdown()
    os._exit(code)

