"""Where forward passes run: ``auto``, ``cpu``, ``cuda[:N]`` or ``mps``.

Analysis and pruning are structural (graph tracing, channel surgery) and stay on the CPU;
BatchNorm calibration, scoring, fine-tuning and latency run on the chosen device.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from ..errors import ConfigError

__all__ = ["DEVICE_PATTERN", "autocast", "resolve_device"]

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
