"""resolve_device: every device name is a device of this machine or one clear ConfigError."""

from __future__ import annotations

import pytest
import torch

from engine.device import resolve_device
from engine.errors import ConfigError


@pytest.fixture
def one_gpu(monkeypatch):
    """A machine with one CUDA device, as far as resolve_device can tell."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("name", ["cuda:1", "cuda:128", "cuda:255", "cuda:2147483648", "cuda:99999999999999999999999"])
def test_a_cuda_index_past_the_machines_devices_is_refused_whatever_its_size(one_gpu, name):
    # torch keeps the index in a byte: cuda:255 would become "cuda" (the current device), cuda:128 cuda:-128
    with pytest.raises(ConfigError, match=rf"^device: '{name}' does not exist; this machine has 1 CUDA device\(s\)"):
        resolve_device(name)


def test_the_machines_own_cuda_device_is_taken(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:99999999999999999999999"])
def test_cuda_on_a_machine_without_it_is_one_error(name):
    with pytest.raises(ConfigError, match=f"^device: '{name}' was asked for, but this machine has no usable CUDA GPU"):
        resolve_device(name)


@pytest.mark.parametrize("name", ["cuda:-1", "cpu\n", "gpu"])
def test_a_name_that_is_no_device_is_one_error(one_gpu, name):
    with pytest.raises(ConfigError, match="^device: .* is not a device; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)
