"""Hyperparameter sweeps: many runs of one config, their options drawn by Optuna.

A sweep folder holds Optuna's SQLite storage (``study.db``) and the sweep's settings
(``sweep.toml``: the base config, the searched options, the number of trials), so ``--resume``
needs nothing else; each trial is a normal run directory in it (``trial-0007``), trained with
``Run.new``, so every command that reads runs reads trials. Optuna's storage is the only
coordination: several processes may work on one study, and a trial whose process died (its
heartbeat stopped) is marked failed and its options tried again (RetryFailedTrialCallback).
"""

from __future__ import annotations

import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import tomli_w

from engine import tomlfile
from engine.config import HIGHER_IS_BETTER, RunConfig, catalog, is_asked
from engine.errors import CheckpointError, ConfigError, TorchdeckError, did_you_mean
from engine.events import EpochEnded, RunFinished, RunStopped
from engine.store import rundir, trust
from engine.store.atomic import write_atomic
from engine.train.metrics import default_monitor
from engine.train.run import Run
from engine.values import coerce, value_kind

EXTRA = "pip install 'torchdeck[sweep]'"
SETTINGS = "sweep.toml"
STORAGE = "study.db"
STUDY = "torchdeck-sweep"  # one study per folder
HEARTBEAT = 1  # seconds between a running trial's heartbeats in the storage
GRACE = 5  # seconds without one after which the trial's process counts as dead
_SET_BY_SWEEP = ("out", "name")  # every trial gets its own directory in the sweep folder


def optuna():
    """The optuna module, or the one line that names the extra to install."""
    try:
        import optuna as module
    except ImportError:
        raise TorchdeckError(f"sweeps need Optuna: {EXTRA}") from None
    return module


@dataclass(frozen=True)
class Param:
    """One searched option: a float or int range (``log``: drawn on a log scale) or choices
    (kept as their text: Optuna stores plain values, a layer list is not one)."""

    name: str
    spec: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    choices: tuple[str, ...] = ()

    def suggest(self, trial) -> Any:
        """The value an Optuna trial draws, as the option's type."""
        if self.choices:
            return self.value(trial.suggest_categorical(self.name, list(self.choices)))
        if isinstance(self.low, int):
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def value(self, drawn: Any) -> Any:
        """A value as Optuna stores it (a choice's text) as the option's type."""
        return coerce(_fields()[self.name], drawn)


def _fields() -> dict:
    return {f.name: f for f in fields(RunConfig) if is_asked(f)}


def parse_param(spec: str) -> Param:
    """``lr=1e-4..1e-1:log``, ``dropout=0..0.5``, ``epochs=5..20`` (whole ends on a whole-number
    option), ``optimizer=adam,sgd`` or ``hidden=64,128`` (choices; ``16,8|32,16`` for lists)."""
    name, sep, text = spec.partition("=")
    name = name.strip().replace("-", "_")
    known = _fields()
    if not sep or not name or not text.strip():
        raise ConfigError(f"--param {spec!r}: write NAME=LOW..HIGH[:log] or NAME=A,B,C")
    if name not in known or name in _SET_BY_SWEEP:
        allowed = [n for n in known if n not in _SET_BY_SWEEP]
        why = "the sweep names each trial's directory" if name in _SET_BY_SWEEP else "it is not a run option"
        raise ConfigError(f"--param {spec!r}: {name!r} cannot be searched; {why}{did_you_mean(name, allowed)}")
    field, kind = known[name], value_kind(known[name])
    if ".." not in text:
        parts = text.split("|") if "|" in text else text.split(",")
        choices = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
        for choice in choices:
            coerce(field, choice)
        return Param(name, spec, choices=choices)
    if kind not in ("int", "float"):
        raise ConfigError(f"--param {spec!r}: {name} is not a number; list its choices: {name}=A,B")
    bounds, _, scale = text.partition(":")
    if scale not in ("", "log"):
        raise ConfigError(f"--param {spec!r}: after the range only ':log' may follow, not {scale!r}")
    low, high = (coerce(field, end.strip()) for end in bounds.split("..", 1))
    if not low < high:
        raise ConfigError(f"--param {spec!r}: the range's low end must be below its high end")
    if scale and low <= 0:
        raise ConfigError(f"--param {spec!r}: a log range must start above 0")
    return Param(name, spec, low, high, log=bool(scale))


def _direction(config: RunConfig) -> tuple[str, str]:
    """(monitor, maximize or minimize): what the trials are scored by, as a run's best epoch is."""
    monitor = config.monitor
    if monitor == "auto":
        kind = catalog("task")[config.task].kind
        if kind == "auto":
            kind = {"classification": "multiclass", "regression": "regression"}.get(config.target_kind, "auto")
        if kind == "auto":
            raise ConfigError("monitor: a sweep scores its trials by one number; name it with --monitor (or give "
                              "--target-kind)", option="monitor")
        monitor = default_monitor(kind)
    return monitor, "maximize" if monitor in HIGHER_IS_BETTER else "minimize"


class TrialFailed(Exception):
    """A trial's run failed (say, it diverged): Optuna records it as failed and goes on."""


class SweepStopped(Exception):
    """The sweep was asked to stop: its running trials stopped and will run again on resume."""


class Sweep:
    """A sweep folder: its settings, its Optuna study, and the trials running in this process."""

    def __init__(self, folder: Path, config: RunConfig, params: list[Param], trials: int, pruner=None,
                 storage: str | None = None):
        self.folder, self.config, self.params, self.trials = folder, config, params, trials
        self.storage = storage_url(folder, storage)
        self.monitor, self.direction = _direction(config)
        self._runs: set[Run] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self.stop_reason = ""
        self.study = self._study(pruner)

    @classmethod
    def create(cls, config: RunConfig, specs: list[str], trials: int, out: str | Path | None = None,
               name: str | None = None, pruner=None, storage: str | None = None) -> "Sweep":
        """A new sweep of ``config`` over ``specs`` (``--param`` texts) in a fresh folder of ``out``
        (default: the config's ``out``), named ``name`` (default: ``sweep-task-model-time``).
        ``storage``: a database URL for a study that several machines share (default: the
        folder's study.db); the folder records only that there is one, never the URL, which the
        user gives again to resume: nothing read from a folder decides where torchdeck writes."""
        optuna()
        params = [parse_param(spec) for spec in specs]
        if not params:
            raise ConfigError("a sweep needs at least one --param, e.g. --param lr=1e-4..1e-1:log")
        if len({p.name for p in params}) < len(params):
            raise ConfigError("--param: each option may be searched once")
        if trials < 1:
            raise ConfigError("--trials: a sweep needs at least 1 trial")
        for param in params:  # the ends and choices must make a valid run, checked before any trial
            for value in param.choices or (param.low, param.high):
                config.replace(**{param.name: value})
        _direction(config)
        config = trust.pin(config.replace(name=None))  # the name is the sweep's folder's; each trial has its own
        folder = rundir.create(out if out is not None else config.out,
                               name or "sweep-" + rundir.default_name(config.task, config.model))
        settings = {"trials": trials, "params": [p.spec for p in params], "config": config.to_dict(),
                    "shared_storage": storage is not None}
        write_atomic(folder / SETTINGS, lambda handle: handle.write(tomli_w.dumps(settings).encode()))
        return cls(folder, config, params, trials, pruner, storage)

    @classmethod
    def open(cls, folder: str | Path, trials: int | None = None, pruner=None, storage: str | None = None) -> "Sweep":
        """The sweep saved in ``folder``, to go on with (``trials``: a new total; ``storage``: the
        database URL of a study kept outside the folder, as given to create)."""
        optuna()
        folder = Path(folder)
        if not (folder / SETTINGS).is_file():
            raise TorchdeckError(f"{folder} is not a sweep folder (it holds no {SETTINGS})")
        settings = tomlfile.read_toml(folder / SETTINGS, "sweep settings", follow_links=False)
        if settings.get("shared_storage") is True and storage is None:
            raise TorchdeckError(f"{folder}: its study is in a database of its own; give its URL with --storage")
        if storage is None and not (folder / STORAGE).is_file():
            raise TorchdeckError(f"{folder} is not a sweep folder (it holds no {STORAGE})")
        try:
            specs, total, values = list(settings["params"]), int(settings["trials"]), dict(settings["config"])
        except (KeyError, TypeError, ValueError):
            raise TorchdeckError(f"{folder / SETTINGS}: not the settings of a sweep") from None
        config = trust.admit(RunConfig.from_dict(values))  # its own code runs only if trusted as it is
        return cls(folder, config, [parse_param(spec) for spec in specs], trials or total, pruner, storage)

    def _study(self, pruner):
        module = optuna()
        with warnings.catch_warnings(), _database(self.folder):
            warnings.simplefilter("ignore", module.exceptions.ExperimentalWarning)
            retry = getattr(module.storages, "RetryHeartbeatStaleTrialCallback", None)  # Optuna 4.9+
            retry = {"heartbeat_stale_trial_callback": retry(max_retry=3)} if retry else \
                {"failed_trial_callback": module.storages.RetryFailedTrialCallback(max_retry=3)}
            waits = {"connect_args": {"timeout": 60}} if self.storage.startswith("sqlite:") else {}  # SQLite's lock
            storage = module.storages.RDBStorage(self.storage, heartbeat_interval=HEARTBEAT, grace_period=GRACE,
                                                 engine_kwargs=waits, **retry)
            started = sum(summary.n_trials for summary in module.get_all_study_summaries(storage, False))
            # seeded from the config, and on from where a resumed study is: no replay of its first draws
            sampler = module.samplers.TPESampler(seed=(self.config.seed + started) % 2**32)
            return module.create_study(storage=storage, study_name=STUDY, direction=self.direction,
                                       sampler=sampler, pruner=pruner or module.pruners.MedianPruner(),
                                       load_if_exists=True)

    def done(self) -> int:
        """Trials complete or pruned so far, by every process of the study."""
        states = optuna().trial.TrialState
        return len(self.study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED)))

    def run(self, jobs: int = 1, on_trial: Callable[[dict], None] | None = None) -> None:
        """Run trials (``jobs`` at once, in threads) until ``trials`` are complete or pruned;
        ``on_trial`` is given each finished trial's row (as :func:`leaderboard` has it).
        Raises SweepStopped after :meth:`stop`."""
        module = optuna()
        states = module.trial.TrialState
        enough = module.study.MaxTrialsCallback(self.trials, states=(states.COMPLETE, states.PRUNED))
        report = [] if on_trial is None else [lambda study, trial: on_trial(_row(self.folder, trial))]
        while (left := self.trials - self.done()) > 0 and not self._stopping:
            before = self.done()
            self.study.optimize(self._objective, n_trials=left, n_jobs=jobs, catch=(TrialFailed,),
                                callbacks=[enough, *report])
            if self._stopping:
                break
            if self.done() == before:  # every trial of the round failed: more would too
                raise TorchdeckError(f"every trial failed; see their run directories in {self.folder}")
        if self._stopping:
            raise SweepStopped(self.stop_reason)

    def stop(self, reason: str = "stopped by the user") -> None:
        """Stop the running trials (they save as runs do) and start no more."""
        with self._lock:
            self._stopping, self.stop_reason = True, reason
            for run in self._runs:
                run.control.stop(reason)

    def _objective(self, trial) -> float:
        changes = {param.name: param.suggest(trial) for param in self.params}
        try:  # each drawn value was checked alone; together they may still clash (batch_norm, batch_size 1)
            config = self.config.replace(out=str(self.folder), name=f"trial-{trial.number:04d}", **changes)
        except ConfigError as exc:
            trial.set_user_attr("message", str(exc))
            raise TrialFailed(str(exc)) from None
        if self._stopping:
            raise SweepStopped(self.stop_reason)
        run = Run.new(config)
        with self._lock:
            self._runs.add(run)
            if self._stopping:
                run.control.stop(self.stop_reason)
        trial.set_user_attr("run_dir", run.run_dir.name)
        pruned = False
        try:
            run.start()
            for event in run.events:
                if isinstance(event, EpochEnded) and not pruned:
                    value = event.val_loss if self.monitor == "val_loss" else event.metrics[self.monitor]
                    trial.report(value, event.epoch)
                    if event.epoch < event.epochs and trial.should_prune():  # at the last, nothing is saved
                        pruned = True
                        run.control.stop(f"pruned by the sweep at epoch {event.epoch}")
        finally:
            run.control.stop("the sweep ended")
            result = run.wait()
            with self._lock:
                self._runs.discard(run)
        if pruned and not isinstance(result, RunFinished):  # pruned at its last epoch, it finished anyway
            raise optuna().TrialPruned()
        if isinstance(result, RunFinished):
            return result.best["value"]
        if isinstance(result, RunStopped) and self._stopping:
            self.study.enqueue_trial(trial.params)  # tried again, from the start, on resume
            raise SweepStopped(self.stop_reason)
        message = getattr(result, "message", "the run ended without a result")
        trial.set_user_attr("message", message)
        raise TrialFailed(message)

    def best(self) -> dict | None:
        """The best complete trial's row, or None while there is none."""
        rows = leaderboard(self.folder, self.study)
        return rows[0] if rows and rows[0]["state"] == "complete" else None

    def trial_config(self, row: dict) -> RunConfig:
        """The config a trial trained with (its options, without the sweep's folder and name)."""
        return self.config.replace(**{param.name: param.value(row["params"][param.name]) for param in self.params})


def storage_url(folder: Path, storage: str | None = None) -> str:
    """The study's database: ``storage`` as given (a URL), else the folder's study.db."""
    return storage or f"sqlite:///{Path(folder).resolve() / STORAGE}"


def leaderboard(folder: str | Path, study=None, storage: str | None = None) -> list[dict]:
    """Every trial of the sweep in ``folder``: number, state, value, params, run_dir, duration
    (seconds, None while running), message (why it failed); best first: complete trials by value, then the rest."""
    module = optuna()
    folder = Path(folder)
    if study is None:
        if storage is None and not (folder / STORAGE).is_file():
            raise TorchdeckError(f"{folder} is not a sweep folder (it holds no {STORAGE})")
        with _database(folder):
            study = module.load_study(study_name=STUDY, storage=storage_url(folder, storage))
    sign = -1 if study.direction == module.study.StudyDirection.MAXIMIZE else 1
    rows = [_row(folder, trial) for trial in study.get_trials(deepcopy=False)]
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
    return sorted(rows, key=lambda row: (order.get(row["state"], 5),
                                         sign * row["value"] if row["value"] is not None else 0, row["number"]))


@contextmanager
def _database(folder: Path):
    """A sweep folder's study.db read through Optuna: a file that is no study is one line."""
    from sqlalchemy.exc import DatabaseError  # Optuna's RDBStorage is SQLAlchemy's

    try:
        yield
    except (DatabaseError, KeyError) as exc:
        why = exc.orig if isinstance(exc, DatabaseError) and exc.orig is not None else exc
        raise CheckpointError(f"{folder / STORAGE} is not a readable torchdeck sweep study: {why}") from None


def _row(folder: Path, trial) -> dict:
    name = trial.user_attrs.get("run_dir")
    # only a plain name inside the sweep folder: the storage is a file like any other
    run_dir = folder / name if isinstance(name, str) and name and Path(name).name == name else None
    if trial.state.name == "PRUNED" and trial.intermediate_values:
        value = trial.intermediate_values[max(trial.intermediate_values)]
    else:
        value = trial.value
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    return {"number": trial.number, "state": trial.state.name.lower(), "value": value, "params": dict(trial.params),
            "run_dir": run_dir, "duration": duration, "message": str(trial.user_attrs.get("message", ""))}
