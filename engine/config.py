"""RunConfig: every option of a run in one validated, TOML-serialisable dataclass.

All front ends meet here: the CLI's flags, a ``--config`` TOML file, the TUI wizard and a
checkpoint's saved config all become a RunConfig, and every check of a value lives in this
module, so a bad value gets the same message wherever it was typed (and the error names its
option). The fields are the one list of options: the CLI's flags and the wizard's rows are made
from them and their help.

Field defaults are neutral; :meth:`RunConfig.for_task` starts from a task's preset (the seed's
exact setup where there is one) and applies the caller's overrides on top.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from importlib import import_module
from pathlib import Path
from typing import Any, Callable, Iterable

from engine import tomlfile, usercode, values
from engine.errors import ConfigError, did_you_mean
from engine.text import printable
from engine.values import Arguments

DEFAULT_TASK = "iris"

# Catalog each name-valued option is checked against; imported on first use because the
# catalogs import torch and `import engine.config` must stay cheap for the CLI.
_CATALOGS = {
    "task": ("engine.data.tasks", "TASKS"),
    "model": ("engine.train.models", "MODELS"),
    "activation": ("engine.train.models", "ACTIVATIONS"),
    "optimizer": ("engine.train.optim", "OPTIMIZERS"),
    "scheduler": ("engine.train.optim", "SCHEDULERS"),
    "loss": ("engine.train.losses", "LOSSES"),
}
# The choices whose entries list the options they use: an option they own works only when listed.
OWNERS = ("model", "optimizer", "scheduler")


def catalog(option: str):
    """The catalog behind a name-valued option (``task``, ``model``, ...)."""
    module, attr = _CATALOGS[option]
    return getattr(import_module(module), attr)


def is_choice(option: str) -> bool:
    """Whether ``option`` names an entry of a catalog (its value is picked from a list)."""
    return option in _CATALOGS


def owner_of(option: str) -> str | None:
    """The choice (of OWNERS) whose chosen entry decides whether ``option`` has an effect; None
    for the options that always do."""
    return next((owner for owner in OWNERS if any(option in e.options for e in catalog(owner).values())), None)


def _option(default: Any, help: str, check: Callable | None = None, group: str = "training",
            short: str | None = None, asked: bool = True):
    """A RunConfig field with what every face needs of it: ``help`` (the CLI's help, the wizard's
    note), the ``check`` of its value, its ``group`` and the CLI's ``short`` flag, if any.
    ``asked=False``: a record the run keeps, not an option (no flag, no row in the wizard)."""
    metadata = {"help": help, "check": check, "group": group, "short": short, "asked": asked}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: Arguments(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def is_asked(f: Field) -> bool:
    """Whether a RunConfig field is an option a person sets (a flag, a row of the wizard)."""
    return f.metadata["asked"]


@dataclass(frozen=True)
class RunConfig:
    """Every option of a training run, checked when the object is made."""

    # data
    task: str = _option(DEFAULT_TASK, "data set to learn (torchdeck list tasks), or your own: FILE.py:NAME or "
                        "package.module:NAME, a Dataset class or a function returning a Dataset, (train, val, test) "
                        "or tensors (x, y)", group="data", short="-t")
    task_args: Arguments = _option({}, "arguments for your own data set, a JSON object such as '{\"n\": 100}'",
                                   group="data")
    data_dir: str | None = _option(None, "folder or file holding the task's data", group="data")
    target: str | None = _option(None, "the column to predict (csv)", group="data")
    target_kind: str = _option("auto", "auto, classification or regression (csv, your own data set)",
                               values.one_of("auto", "classification", "regression"), "data")
    missing: str = _option("drop", "rows with missing values: drop or impute (csv)", values.one_of("drop", "impute"), "data")
    image_size: int | None = _option(None, "resize images to this square size (image-folder)", values.image_size, "data")
    augment: bool = _option(False, "flip, rotate and shift training images (image-folder)", group="data")
    val_fraction: float = _option(0.1, "share of the data held out for validation", values.fraction, "data")
    test_fraction: float = _option(0.2, "share of the data held out for the final test", values.fraction, "data")
    # model
    model: str = _option("mlp", "network architecture (torchdeck list models): a catalog name, any torchvision "
                         "classification model, or your own: FILE.py:NAME or package.module:NAME, an nn.Module "
                         "class or a function returning one", group="model", short="-m")
    model_args: Arguments = _option(
        {}, "arguments for your own model, a JSON object such as '{\"hidden_dim\": 32}'; parameters named "
        f"{usercode.argument_names()} are filled in from the task unless given", group="model")
    hidden: tuple[int, ...] = _option((64,), "hidden layer sizes, e.g. 16,8", values.layer_sizes, "model")
    activation: str = _option("relu", "activation between hidden layers", group="model")
    dropout: float = _option(0.0, "dropout probability after each hidden layer", values.between(0, 1), "model")
    batch_norm: bool = _option(False, "batch normalisation after each hidden layer", group="model")
    weights: str | None = _option(None, "state dict file to start the model from (torchvision models), e.g. "
                                  "pretrained weights saved offline", group="model")
    strip_prefix: str | None = _option(None, "prefix to remove from the --weights file's keys, e.g. module. or "
                                       "model. (a wrapper's names)", group="model")
    freeze: bool = _option(False, "train only the new output layer of a torchvision model (transfer learning)",
                           group="model")
    loss: str = _option("auto", "loss function; auto follows the task kind", group="model")
    # optimisation
    optimizer: str = _option("adam", "optimizer (torchdeck list optimizers)", short="-o")
    lr: float = _option(1e-3, "learning rate", values.positive)
    momentum: float = _option(0.0, "momentum (sgd, rmsprop)", values.between(0, 1))
    nesterov: bool = _option(False, "Nesterov momentum (sgd)")
    weight_decay: float = _option(0.0, "L2 penalty (decoupled for adamw)", values.at_least(0))
    scheduler: str = _option("none", "learning-rate schedule (torchdeck list schedulers)")
    step_size: int = _option(10, "epochs between learning-rate drops (step)", values.at_least(1))
    gamma: float = _option(0.1, "learning-rate factor per drop (step, plateau)", values.gamma)
    scheduler_patience: int = _option(5, "epochs without improvement before a drop (plateau)", values.at_least(0))
    batch_size: int = _option(32, "samples per optimisation step", values.at_least(1), short="-b")
    epochs: int = _option(20, "total number of epochs", values.at_least(1), short="-e")
    patience: int = _option(0, "early stopping: epochs without improvement (0 = off)", values.at_least(0))
    min_delta: float = _option(0.0, "early stopping: smallest change that counts", values.at_least(0))
    monitor: str = _option("auto", "validation number for best checkpoint and early stopping")
    # run
    device: str = _option("auto", "auto, cpu, cuda, cuda:N or mps", values.device, "run")
    seed: int = _option(0, "random seed; the same seed gives the same run on CPU", values.between(0, 2**64), "run")
    out: str = _option("checkpoints", "folder that receives the run directory", group="run")
    name: str | None = _option(None, "run directory name (default: task-model-time)", group="run")
    save_every: float = _option(
        30.0, "seconds between checkpoint writes (0 = every epoch); stops, failures and the end always write",
        values.at_least(0), "run")
    amp: bool = _option(False, "bfloat16 autocast: mixed precision for GPUs and large models", group="run")
    compile: bool = _option(False, "torch.compile the model: faster steps on GPUs after a slow first batch",
                            group="run")
    log: str = _option("none", "logs for other tools: none, or tensorboard (event files in the run directory's "
                       "tensorboard folder; pip install 'torchdeck[tensorboard]')", values.one_of("none", "tensorboard"),
                       "run")
    code: Arguments = _option({}, "SHA-256 of the file of your own model and task code, recorded by the run",
                              group="run", asked=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, values.coerce(f, getattr(self, f.name)))
            check = f.metadata["check"]
            problem = check(getattr(self, f.name)) if check else None
            if problem:
                raise ConfigError(f"{f.name}: {getattr(self, f.name)!r} is not allowed; {problem}", option=f.name)
        for option in _CATALOGS:
            if option != "loss" or self.loss != "auto":
                catalog(option).entry(getattr(self, option), option)
        self._check_combination()

    def check_kind(self, *kinds: str) -> None:
        """Refuse a loss or monitor that fits none of ``kinds``, the kinds the task can have.

        A task of kind ``auto`` (a user's own data) is checked against what it may turn out to be
        here, and again by the run against the one kind its data has.
        """
        what = f"the {' or '.join(kinds)} task '{self.task}'"
        if self.loss != "auto" and not set(kinds) & set(catalog("loss")[self.loss].kinds):
            fitting = [name for name, entry in catalog("loss").items() if set(kinds) & set(entry.kinds)]
            raise ConfigError(f"loss: '{self.loss}' does not fit {what}; choose one of auto, {', '.join(fitting)}",
                              option="loss")
        allowed = list(dict.fromkeys(name for kind in kinds for name in monitors(kind)))
        if self.monitor not in allowed:
            raise ConfigError(
                f"monitor: '{self.monitor}' is not measured for {what}; "
                f"choose one of {', '.join(allowed)}{did_you_mean(self.monitor, allowed)}", option="monitor"
            )

    def _kinds(self) -> tuple[str, ...]:
        """The kinds the task can have before its data is read: an ``auto`` task's data decides,
        and only ``target_kind`` narrows that down in advance."""
        kind = catalog("task")[self.task].kind
        if kind != "auto":
            return (kind,)
        return {"classification": ("binary", "multiclass"), "regression": ("regression",)}.get(
            self.target_kind, ("binary", "multiclass", "regression"))

    def _check_combination(self) -> None:
        self.check_kind(*self._kinds())
        task = catalog("task")[self.task]
        own_model, own_task = usercode.parse(self.model) is not None, usercode.parse(self.task) is not None
        for option, own, what in (("model_args", own_model, "model"), ("task_args", own_task, "task")):
            if getattr(self, option) and not own:
                raise ConfigError(f"{option}: only your own {what} ({flag(what)} FILE.py:NAME) takes arguments; "
                                  f"'{getattr(self, what)}' takes none", option=option)
        if self.freeze and "freeze" not in catalog("model")[self.model].options:
            raise ConfigError(f"freeze: the model '{self.model}' has no pretrained body and new head to tell apart; "
                              f"--freeze is for torchvision models (torchdeck list models)", option="freeze")
        if catalog("model")[self.model].images_only and task.inputs == "table":
            raise ConfigError(
                f"model: '{self.model}' needs image inputs, and the task '{self.task}' is a table; "
                f"choose {' or '.join(n for n, m in catalog('model').items() if not m.images_only)}",
                option="model",
            )
        if (self.image_size is not None or self.augment) and not (task.inputs == "images" and task.image_set is None):
            option = "image_size" if self.image_size is not None else "augment"
            raise ConfigError(f"{option}: only image-folder tasks resize and augment their images; '{self.task}' does not",
                              option=option)
        if self.val_fraction + self.test_fraction > 0.6:  # two options at fault: the error names neither
            raise ConfigError(
                f"val_fraction + test_fraction: {self.val_fraction} + {self.test_fraction} leaves too little to "
                f"train on; keep their sum at most 0.6"
            )
        if self.model == "mlp" and not self.hidden:
            raise ConfigError("hidden: the mlp model needs at least one hidden layer, e.g. 64", option="hidden")
        if self.name is not None and (not self.name.strip(". ") or {"/", "\\"} & set(printable(self.name))):
            raise ConfigError(f"name: {self.name!r} is not allowed; use a plain folder name without /, \\ or "
                              f"control characters", option="name")
        if self.batch_norm and self.batch_size < 2:
            raise ConfigError("batch_size: batch normalisation needs at least 2 samples per batch", option="batch_size")
        if self.data_dir is not None and not catalog("task")[self.task].reads_data_dir:
            raise ConfigError(f"data_dir: the task '{self.task}' comes with its data and reads no data folder",
                              option="data_dir")

    def ignored(self, names: Iterable[str]) -> list[str]:
        """Warnings for those of ``names`` that the chosen model, optimizer or scheduler ignores."""
        names = list(names)
        return [f"{name} has no effect with {owner} {getattr(self, owner)}" for owner in OWNERS for name in names
                if owner_of(name) == owner and name not in catalog(owner)[getattr(self, owner)].options]

    # --- construction -------------------------------------------------------------------

    @classmethod
    def for_task(cls, task: str = DEFAULT_TASK, **overrides: Any) -> "RunConfig":
        """The task's preset with ``overrides`` applied: what choosing a task means."""
        preset = catalog("task").entry(task, "task").preset
        return cls.from_dict({**preset, **overrides, "task": task})

    @classmethod
    def from_values(cls, given: dict[str, Any]) -> "RunConfig":
        """A config from loose values (a TOML file, CLI flags): the named task's preset first."""
        given = dict(given)
        return cls.for_task(given.pop("task", DEFAULT_TASK), **given)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """A config from exactly these values; unknown keys are errors."""
        known = option_names()
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown option '{key}'{did_you_mean(key, known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "RunConfig":
        """A copy with ``changes`` applied and checked."""
        return self.from_dict({**self.to_dict(), **changes})

    # --- serialisation ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples, no ``None``): safe for TOML, JSON and checkpoints."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, Mapping):
                if value:
                    out[key] = json.loads(repr(value))
            elif value is not None:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    @staticmethod
    def read_toml(path: str | Path) -> dict[str, Any]:
        """The values of a TOML config file (not yet merged with a preset)."""
        found = tomlfile.read_toml(path)
        known = option_names()
        for key in found:
            if key not in known:
                raise ConfigError(f"config file {path}: unknown option '{key}'{did_you_mean(key, known)}")
        return found

    @classmethod
    def from_toml(cls, path: str | Path) -> "RunConfig":
        return cls.from_values(cls.read_toml(path))


def option_names() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def option_help() -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in fields(RunConfig)}


def flag(name: str, on: bool = True) -> str:
    """The ``torchdeck train`` flag of an option: its name with ``-`` for ``_``; ``on=False``
    gives a switch's ``--no-`` flag."""
    return ("--" if on else "--no-") + name.replace("_", "-")


def as_text(value: Any) -> str:
    """A value as typed on the command line or in a form: lists comma-separated, booleans in
    lower case, None empty. RunConfig reads each back to the same value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, Mapping):
        return json.dumps(dict(value)) if value else ""
    return str(value)


def command_line(config: RunConfig) -> str:
    """The ``torchdeck train`` command that makes ``config``, with only the flags that differ
    from its task's preset, so a setup chosen in the TUI can be repeated headless. Flags are the
    CLI's (:func:`flag`), values as :func:`as_text` writes them."""
    preset = RunConfig.for_task(config.task)
    words = ["torchdeck", "train", "--task", config.task]
    for f in fields(RunConfig):
        value = getattr(config, f.name)
        if f.name == "task" or value == getattr(preset, f.name) or not is_asked(f):
            continue
        words += [flag(f.name, value)] if isinstance(value, bool) else [flag(f.name), as_text(value)]
    return shlex.join(words)


HIGHER_IS_BETTER = frozenset({"accuracy", "r2"})  # the monitors that improve upwards; losses and errors fall


def monitors(kind: str) -> list[str]:
    """The names ``monitor`` accepts for a task kind; ``auto`` picks the first metric."""
    metrics = ["mae", "rmse", "r2"] if kind == "regression" else ["accuracy"]
    return ["auto", "val_loss", *metrics]
