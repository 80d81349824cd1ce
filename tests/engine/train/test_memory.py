"""The memory estimate: counted on the meta device, equal to what the real model holds, and a
run that cannot fit refused in one line before anything of its size is allocated."""

from __future__ import annotations

import os
import re

import pytest
import torch
from PIL import Image

from engine.config import RunConfig
from engine.data import folders
from engine.errors import ConfigError
from engine.text import size_text
from engine.train import memory
from engine.train.models import build_model
from engine.train.optim import OPTIMIZERS
from engine.train.run import Run

CPU = torch.device("cpu")
SHAPES = {"iris": ([4], 3), "mnist": ([1, 28, 28], 10), "fashion-mnist": ([1, 28, 28], 10),
          "cifar10": ([3, 32, 32], 10), "image-folder": ([3, 64, 64], 10), "cats-vs-dogs": ([3, 180, 180], 1)}


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("task, options", [("iris", {}), ("mnist", {}), ("fashion-mnist", {}),
                                           ("cifar10", {}), ("mnist", {"model": "resnet18"})])
def test_the_estimate_counts_the_parameters_and_buffers_the_real_model_holds(task, options):
    config = RunConfig.for_task(task, **options)
    inputs = memory.Inputs(*SHAPES[task])
    model = build_model(config, inputs)
    estimate = memory.estimate(config, inputs)
    assert estimate.parameters == nbytes([*model.parameters(), *model.buffers()])
    assert estimate.gradients == nbytes(model.parameters())


@pytest.mark.parametrize("optimizer, momentum", [("adam", 0), ("adamw", 0), ("sgd", 0), ("sgd", 0.9),
                                                 ("rmsprop", 0), ("rmsprop", 0.9)])
def test_the_optimizer_state_is_what_the_optimizer_keeps_after_a_step(optimizer, momentum):
    config = RunConfig.for_task("iris", optimizer=optimizer, momentum=momentum)
    inputs = memory.Inputs(*SHAPES["iris"])
    model = build_model(config, inputs)
    step = OPTIMIZERS[optimizer].build(model.parameters(), config)
    model(torch.randn(8, 4)).sum().backward()
    step.step()
    kept = [t for state in step.state.values() for t in state.values() if torch.is_tensor(t) and t.dim()]
    assert memory.estimate(config, inputs).optimizer == nbytes(kept)  # "step" counters left out: scalars


def test_the_activations_are_the_batch_and_every_layers_output():
    config = RunConfig.for_task("iris", batch_size=10)  # Flatten, Linear 16, ReLU, Dropout, Linear 8, ..., Linear 3
    per_sample = 4 + 4 + 3 * 16 + 3 * 8 + 3
    assert memory.estimate(config, memory.Inputs([4], 3)).activations == 10 * per_sample * 4
    in_use = memory.estimate(config, memory.Inputs([4], 3), training=False)
    assert (in_use.gradients, in_use.optimizer, in_use.activations) == (0, 0, 2 * 10 * 16 * 4)


@pytest.mark.parametrize("task", list(SHAPES))
def test_every_preset_fits_with_room_to_spare(task):
    config = RunConfig.for_task(task)
    assert memory.estimate(config, memory.Inputs(*SHAPES[task])).total < 2e9
    memory.check(config, CPU, memory.Inputs(*SHAPES[task]))


def test_a_run_the_machine_cannot_hold_is_refused_before_its_model_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda device: 5000)
    config = RunConfig.for_task("iris", out=str(tmp_path / "runs"))
    message = ("the model needs about 9.2 kB (parameters 972 B, gradients 972 B, optimizer 1.9 kB, activations of "
               "one batch 5.3 kB) but cpu has 5.0 kB available; use fewer or smaller --hidden layers or a smaller "
               "--batch-size")
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        Run.new(config)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("hidden, needs", [
    ((10**10,), r"about 3\.2 TB \(parameters 320\.0 GB"),
    ((10**8, 10**8), r"about 160\.0 PB \(parameters 40\.0 PB"),
    ((10**10, 10**10), r"more memory than any machine has: one batch or one of its tensors would hold over 9\.2e\+18"),
])
def test_absurd_hidden_layers_are_refused_without_allocating_them(tmp_path, hidden, needs):
    with pytest.raises(ConfigError, match=needs):
        Run.new(RunConfig.for_task("iris", hidden=hidden, out=str(tmp_path)))


@pytest.mark.parametrize("size, needs", [(2147483648, "more memory than any machine has"),
                                         (100_000, r"the model needs about \d+\.\d TB")])
def test_a_huge_image_size_is_refused_before_any_image_is_resized(tmp_path, monkeypatch, size, needs):
    for name in ("cat", "dog"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for index in range(6):
            Image.new("RGB", (12, 12), (index * 40, 0, 0)).save(tmp_path / "photos" / name / f"{index}.png")

    def resized(*args):
        raise AssertionError("an image was opened and resized before the estimate")

    monkeypatch.setattr(folders, "open_image", resized)
    config = RunConfig.for_task("image-folder", data_dir=str(tmp_path / "photos"), image_size=size,
                                out=str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match=f"{needs}.*a smaller --image-size or a smaller --batch-size$"):
        Run.new(config)


def test_the_device_tells_what_it_has_free(monkeypatch):
    assert memory.available(CPU) > 0
    assert memory.available(torch.device("meta")) is None  # nothing to tell: not checked
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 * 10**9, 8 * 10**9))
    assert memory.available(torch.device("cuda")) == 3 * 10**9


def test_without_proc_meminfo_the_cpu_falls_back_to_sysconf(monkeypatch):
    def no_file(*args, **kwargs):
        raise FileNotFoundError("/proc/meminfo")

    monkeypatch.setattr(memory, "open", no_file, raising=False)
    monkeypatch.setattr(os, "sysconf", {"SC_AVPHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}.__getitem__)
    assert memory.available(CPU) == 4096 * 1000


def test_sizes_are_written_in_decimal_units():
    assert [size_text(size) for size in (0, 999, 1000, 999_949, 999_950, 42_100_000_000, 10**25)] == \
        ["0 B", "999 B", "1.0 kB", "999.9 kB", "1.0 MB", "42.1 GB", "10000.0 ZB"]
