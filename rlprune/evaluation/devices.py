"""Where forward passes run: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.

Analysis and pruning are structural (graph tracing, channel surgery) and stay on the CPU;
BatchNorm calibration, scoring, fine-tuning and latency run on the chosen device.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

from ..errors import ConfigError

__all__ = ["DEVICE_PATTERN", "autocast", "resolve_device", "threads_for_load"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
"""The device names rlprune accepts."""


def resolve_device(name: str) -> torch.device:
    """The :class:`torch.device` for ``name``; ``auto`` is CUDA when available, else CPU.

    Raises:
        ConfigError: an unknown name, or a device this machine does not have.
    """
    text = str(name).strip().lower()
    if not DEVICE_PATTERN.match(text):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.split(":")[1]) if ":" in text else 0
        if count == 0:
            raise ConfigError(
                f"device {name!r} is not available: this torch sees no CUDA device; use "
                "--device cpu (or auto)"
            )
        if index >= count:
            raise ConfigError(
                f"device {name!r} does not exist: this machine has {count} CUDA device(s), "
                f"cuda:0..cuda:{count - 1}"
            )
        return torch.device("cuda", index)
    if text == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' is not available on this machine; use --device cpu")
    return torch.device(text)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """Mixed precision for inference when ``enabled``: float16 on CUDA and MPS, bfloat16
    on the CPU; a no-op otherwise."""
    if not enabled:
        yield
        return
    dtype = torch.bfloat16 if device.type == "cpu" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def threads_for_load() -> int:
    """Torch threads for in-process work, given what else runs here: torch's own choice
    (one per core) on an idle machine, fewer when the 1-minute load average says other
    processes hold cores (at least one). Two threads contending with another process make
    small convolutions 10-100x slower; one thread is 1-2x slower on an idle machine."""
    default = torch.get_num_threads()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average (Windows): keep torch's choice
        return default
    free = (os.cpu_count() or 1) - load
    return max(1, min(default, int(free + 0.5)))
