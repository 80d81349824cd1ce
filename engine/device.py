"""Choosing the device and describing the machine a run is on."""

from __future__ import annotations

import os
import platform

import torch

from engine.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` is cuda, then mps, then cpu; an explicit device must exist on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device: '{name}' was asked for, but this machine has no usable CUDA GPU; use cpu or auto",
                option="device",
            )
        # Counted here, before torch reads the index: it keeps one in a byte, so cuda:255 would
        # silently become the current device and cuda:99999999999 an error of its own.
        if index.isascii() and index.isdigit() and int(index) >= torch.cuda.device_count():
            raise ConfigError(
                f"device: '{name}' does not exist; this machine has {torch.cuda.device_count()} CUDA device(s)",
                option="device",
            )
    if kind == "mps" and not _mps_available():
        raise ConfigError(f"device: '{name}' was asked for, but MPS is not available here; use cpu or auto",
                          option="device")
    try:
        return torch.device(name)
    except RuntimeError:  # a name that did not come through RunConfig's check
        raise ConfigError(f"device: {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps",
                          option="device") from None


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return _cpu_model() or platform.processor() or platform.machine() or "cpu"


def _cpu_model() -> str:
    """The CPU's marketing name on Linux ('AMD EPYC 7B13'), or '' elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def device_info(device: torch.device | str) -> dict[str, object]:
    """What a dashboard shows about where the run is going: name, memory, threads."""
    device = torch.device(device)
    info: dict[str, object] = {
        "device": str(device),
        "name": device_name(device),
        "torch": str(torch.__version__),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count() or 1,
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        info["memory_used"] = total - free
        info["memory_total"] = total
    return info
