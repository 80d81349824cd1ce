"""``--log tensorboard``: a run's events as TensorBoard event files, in ``RUN_DIR/tensorboard``.

TensorBoard is what people reach for to compare runs, and ``tensorboard --logdir checkpoints/``
then shows every run that asked for the log. The log is a listener beside the RunWriter: it
sees each event in the training thread, on rank 0 only. Every scalar is plotted against the
global step (an epoch's values at the step that ends it), so a resumed run's curves go on where
its checkpoint was; what a killed run logged past that point is purged on resume.

``tensorboard`` is an optional extra: :func:`check` refuses the log without it in one line,
before anything is built or written.
"""

from __future__ import annotations

from dataclasses import fields
from importlib import import_module
from pathlib import Path
from typing import Any

from engine.config import RunConfig, as_text, is_asked
from engine.errors import CheckpointError, ConfigError
from engine.events import BatchProgress, EpochEnded, Event, RunFinished, RunStarted

FOLDER = "tensorboard"
MISSING = "--log tensorboard needs the tensorboard package: pip install 'torchdeck[tensorboard]'"


def check(config: RunConfig) -> None:
    """Refuse a log that asks for a package this Python lacks."""
    if config.log != "tensorboard":
        return
    try:
        import_module("tensorboard")  # torch.utils.tensorboard's own import may already be cached
        import_module("torch.utils.tensorboard")
    except ImportError:
        raise ConfigError(MISSING, option="log") from None


def hparams(config: RunConfig) -> dict[str, Any]:
    """The run's options as TensorBoard's hparams: numbers stay numbers (to sort and plot by),
    the rest is text as typed on the command line (a list as 16,8, a switch as true)."""
    found = {}
    for f in fields(RunConfig):
        value = getattr(config, f.name)
        if is_asked(f) and value is not None:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            found[f.name] = value if number or isinstance(value, str) else as_text(value)
    return found


class TensorBoardLog:
    """Writes batch losses, epoch losses, metrics and learning rate, test scores and the run's
    options (hparams) as TensorBoard records. ``step``: the run's global step now (0 for a new
    run), from which a resumed log goes on."""

    def __init__(self, run_dir: Path, config: RunConfig, step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self.folder = run_dir / FOLDER
        self._batches = 0
        try:  # resumed: what a killed run logged past its checkpoint's step is hidden, that step kept
            self._writer = SummaryWriter(str(self.folder), purge_step=step + 1 if step else None)
            # The session's options only: with no experiment record TensorBoard gathers the options
            # and scalars of every run under its logdir, where one run's record would hide the others'.
            _, start, _ = hparams_summary(hparams(config), {})
            self._writer.file_writer.add_summary(start)
        except OSError as exc:
            raise self._failed(exc) from None

    def __call__(self, event: Event) -> None:
        """Record ``event``; a write that fails ends the run in one line, as the RunWriter's do,
        except at the terminal event, which must reach the front end."""
        try:
            self._record(event)
            if event.terminal:
                self._writer.close()
        except OSError as exc:
            if not event.terminal:
                raise self._failed(exc) from None

    def _record(self, event: Event) -> None:
        scalar = self._writer.add_scalar
        if isinstance(event, RunStarted):
            self._batches = event.batches
        elif isinstance(event, BatchProgress):
            scalar("loss/batch", event.loss, event.step)
        elif isinstance(event, EpochEnded):
            step = event.epoch * self._batches
            scalar("loss/train", event.train_loss, step)
            scalar("loss/val", event.val_loss, step)
            for name, value in event.metrics.items():
                scalar(f"metrics/{name}", value, step)
            scalar("learning_rate", event.lr, step)
            self._writer.flush()  # a TensorBoard watching the run sees each epoch as it ends
        elif isinstance(event, RunFinished):
            for name, value in event.test.items():
                scalar(f"test/{name}", value, event.epochs_done * self._batches)

    def _failed(self, exc: OSError) -> CheckpointError:
        return CheckpointError(f"cannot write the TensorBoard log in {self.folder}: {exc.strerror or exc}")
