"""The learning-rate range test (Smith, 2015; fastai's ``lr_find``): train a few batches with a
learning rate that grows exponentially from ``start`` to ``end``, watch the smoothed loss, and
suggest a rate where it falls fastest before it blows up.

The test trains a model of its own, built from the config exactly as a run builds its parts
(``Parts.build``: data, model, loss, optimizer), and throws it away: no run directory is made,
no weights file is written, and the global random number generators (torch, CUDA, NumPy,
Python's) are put back as they were, so a run started afterwards draws what it would have drawn.

The suggestions follow fastai: the loss is an exponential moving average with bias correction,
the first tenth of the planned batches and the last five recorded are left out (warm-up noise
and the blow-up), "steepest" is the rate at the most negative slope of the loss over log(lr)
before its minimum,
and "valley" takes the longest stretch of falling loss and a point 2/3 of the way down it,
which is less fooled by one noisy drop than the steepest point.
"""

from __future__ import annotations

import math
import random
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from engine.config import RunConfig
from engine.device import resolve_device
from engine.errors import ConfigError
from engine.store import trust
from engine.train.distributed import World
from engine.train.prepare import Parts

BETA = 0.98  # fastai's smoothing of the loss
DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum
MAX_BATCHES = 10_000


@dataclass
class LrFind:
    """What a range test found: the rates tried, their smoothed losses, and the suggestions."""

    lrs: list[float]
    losses: list[float]  # smoothed: exponential moving average, bias corrected
    suggestion: float | None  # None when too few batches were recorded to tell
    steepest: float | None
    valley: float | None
    rule: str  # which suggestion was taken, and why, in one line
    stopped: str  # why the test ended: it diverged, or its batch budget was spent

    def to_dict(self) -> dict:
        return asdict(self)

    def chart(self) -> tuple[list[float], list[float], list[float]]:
        """(rates, losses, ticks) as both faces chart them on a log axis: the blow-up past 1.5
        times the first loss left off, so the descent fills the chart, and a tick per power of ten."""
        shown = [(lr, loss) for lr, loss in zip(self.lrs, self.losses) if loss <= 1.5 * self.losses[0]]
        if not shown:
            return [], [], []
        rates, losses = map(list, zip(*shown))
        decades = range(math.floor(math.log10(rates[0])), math.ceil(math.log10(rates[-1])) + 1)
        return rates, losses, [10.0 ** k for k in decades]


def find_lr(config: RunConfig, start: float = 1e-7, end: float = 10.0, batches: int = 100,
            cancelled: Callable[[], bool] | None = None) -> LrFind:
    """The range test of ``config``'s task, model and optimizer over at most ``batches`` batches
    (the train split's, cycled), the rate growing from ``start`` to ``end``. ``cancelled``:
    asked before each batch; true ends the test where it is (a front end that gave up on it)."""
    if not 0 < start < end < math.inf:
        raise ConfigError(f"start {start:g} and end {end:g}: the range of rates needs 0 < start < end, both finite")
    if not 2 <= batches <= MAX_BATCHES:
        raise ConfigError(f"batches: {batches} is not allowed; it must be from 2 to {MAX_BATCHES}")
    saved = _rng_states()
    parts = None
    try:
        with torch.random.fork_rng(devices=_cuda_devices(config)):
            parts = Parts.build(trust.pin(config), World.single())
            lrs, losses, stopped = _range_test(parts, _rates(start, end, batches), cancelled or (lambda: False))
    finally:
        if parts is not None:
            parts.data.close()
        _set_rng_states(saved)
    return _suggest(lrs, losses, stopped, skip_start=batches // 10)


def _rates(start: float, end: float, batches: int) -> list[float]:
    """``batches`` rates from ``start`` to ``end``, each the same factor above the one before."""
    return [start * (end / start) ** (index / (batches - 1)) for index in range(batches)]


def _range_test(parts: Parts, rates: list[float], cancelled: Callable[[], bool]):
    """(rates tried, smoothed losses, why it stopped): one batch per rate until the smoothed loss
    exceeds ``DIVERGED`` times its minimum or becomes NaN or infinite, or the rates run out."""
    lrs, losses, average, best = [], [], 0.0, math.inf
    parts.model.train()
    for index, (lr, (inputs, targets)) in enumerate(zip(rates, _cycled(parts))):
        if cancelled():
            return lrs, losses, f"cancelled after {index} batches"
        loss = _step(parts, inputs, targets, lr)
        average = BETA * average + (1 - BETA) * loss
        smoothed = average / (1 - BETA ** (index + 1))
        if not math.isfinite(smoothed):
            return lrs, losses, f"diverged at lr {lr:.3g}: the loss became {loss}"
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if smoothed > DIVERGED * best:
            return lrs, losses, f"diverged at lr {lr:.3g}: the smoothed loss rose above {DIVERGED:g}x its minimum"
    return lrs, losses, f"reached the end of the range ({len(rates)} batches)"


def _cycled(parts: Parts) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The train split's batches in the run's shuffled order, epoch after epoch, without end."""
    train, batch_size = parts.data.splits["train"], parts.config.batch_size
    while True:
        order = parts.shuffle.permutation(len(train), resuming=False).to(parts.device)
        yield from train.batches(order, batch_size, 0, parts.batches())


def _step(parts: Parts, inputs: torch.Tensor, targets: torch.Tensor, lr: float) -> float:
    """One optimisation step at rate ``lr``, as the run's loop takes it; the batch's mean loss."""
    for group in parts.optimizer.param_groups:
        group["lr"] = lr
    if parts.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(parts.device.type, dtype=torch.bfloat16) if parts.config.amp else nullcontext()
    with autocast:
        loss = parts.loss_fn(parts.model(inputs), targets)
    parts.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    parts.optimizer.step()
    return float(loss.detach())


def _suggest(lrs: list[float], losses: list[float], stopped: str, skip_start: int) -> LrFind:
    """The steepest and valley rates of the losses fastai looks at, and the one suggested: the
    valley (fastai's default), or the steepest point when no stretch of the loss falls."""
    kept = slice(skip_start, max(skip_start, len(lrs) - 5))
    rates, values = lrs[kept], losses[kept]
    if len(rates) < 3:
        return LrFind(lrs, losses, None, None, None, f"no suggestion: {len(lrs)} batches are too few to tell (the "
                      "first tenth and the last five are left out); give it more batches, or a lower start if it "
                      "diverged early", stopped)
    steepest, (low, high, valley) = _steepest(rates, values), _valley(rates, values)
    if high - low >= 2:
        rule = (f"valley (fastai's default): the longest falling stretch of the loss runs from lr {rates[low]:.3g} "
                f"to {rates[high]:.3g}; the suggestion lies 2/3 of the way down it")
        return LrFind(lrs, losses, valley, steepest, valley, rule, stopped)
    rule = "steepest: the loss has no falling stretch of 3 batches; the suggestion is where it falls fastest"
    return LrFind(lrs, losses, steepest, steepest, None, rule, stopped)


def _steepest(rates: list[float], losses: list[float]) -> float:
    """The rate at the most negative slope of the loss against log(lr), up to its minimum: a dip
    in the loss once it has started to blow up is no rate to train at."""
    lowest = max(1, min(range(len(losses)), key=losses.__getitem__))
    slopes = [(losses[i + 1] - losses[i]) / math.log(rates[i + 1] / rates[i]) for i in range(lowest)]
    return rates[min(range(len(slopes)), key=slopes.__getitem__)]


def _valley(rates: list[float], losses: list[float]) -> tuple[int, int, float]:
    """fastai's valley: (first, last) index of the longest decreasing subsequence of the loss
    ending at ``last`` (counted back by its length), and the rate 2/3 of the way between them."""
    length = [1] * len(losses)
    first = last = 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[last] < length[i]:
            last, first = i, max(0, i - length[i])
    sections = (last - first) / 3
    return first, last, rates[first + int(sections) + int(sections / 2)]


def _cuda_devices(config: RunConfig) -> list[int]:
    """The CUDA devices whose generators the test may draw from: every one, once CUDA is in use
    or the run is to train on it (CUDA is not started for a run on another device)."""
    if torch.cuda.is_available() and (torch.cuda.is_initialized() or resolve_device(config.device).type == "cuda"):
        return list(range(torch.cuda.device_count()))
    return []


def _rng_states() -> tuple:
    return random.getstate(), np.random.get_state()


def _set_rng_states(states: tuple) -> None:
    random.setstate(states[0])
    np.random.set_state(states[1])
