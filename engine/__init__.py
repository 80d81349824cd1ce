"""torchdeck's training engine: plain PyTorch in a worker thread, reporting through events.

Use it from any Python program::

    from engine import RunConfig, start
    run = start(RunConfig.for_task("iris"))
    for event in run.events:          # or: async for event in run.events
        print(event.to_dict())

The names below are imported on first use, so ``import engine`` stays cheap and the CLI's
``--help`` never loads torch. This package never imports textual.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "RunConfig": "engine.config",
    "TorchdeckError": "engine.errors",
    "ConfigError": "engine.errors",
    "DataError": "engine.errors",
    "CheckpointError": "engine.errors",
    "Run": "engine.train.run",
    "start": "engine.train.run",
    "Control": "engine.train.control",
    "EventStream": "engine.events",
    "TASKS": "engine.data.tasks",
    "MODELS": "engine.train.models",
    "OPTIMIZERS": "engine.train.optim",
    "SCHEDULERS": "engine.train.optim",
    "LOSSES": "engine.train.losses",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
