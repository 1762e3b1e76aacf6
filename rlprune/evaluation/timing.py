"""Wall-clock inference latency on the CPU, and before/after speedups of a pruned model.

MACs are what the pruning budget counts; latency is what a user feels. The two differ
(memory traffic, kernel choice, thread scheduling), so the apply report shows both.
Timings are noisy on a shared machine: report medians, and compare two models with
:func:`compare_latency`, which interleaves their runs so that background load slows
both alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, ModelError

CPU = torch.device("cpu")

__all__ = [
    "LatencySpeedup",
    "LatencyStats",
    "compare_latency",
    "PairedSpeedup",
    "interleaved_ms",
    "measure_latency",
    "paired_speedups",
]


@dataclass(frozen=True)
class LatencyStats:
    """Forward-pass time of one model at one batch size, in milliseconds."""

    batch_size: int
    median_ms: float
    p10_ms: float
    """10th percentile: close to the machine's best case."""
    p90_ms: float
    """90th percentile: how bad the slow runs get."""
    repeats: int
    """Timed forward passes (warm-up passes excluded)."""
    threads: int
    """``torch.get_num_threads()`` during the measurement."""


@dataclass(frozen=True)
class LatencySpeedup:
    """The same batch timed on the model before and after pruning."""

    batch_size: int
    before: LatencyStats
    after: LatencyStats
    speedup: float
    """``before.median_ms / after.median_ms``; above 1 means the pruned model is faster."""

    def as_dict(self) -> dict[str, float]:
        """``{"before_ms", "after_ms", "speedup"}``: the medians, as the report stores them."""
        return {
            "before_ms": self.before.median_ms,
            "after_ms": self.after.median_ms,
            "speedup": self.speedup,
        }


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    *,
    repeats: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> LatencyStats:
    """Time ``repeats`` forward passes of ``model`` on one random CPU batch.

    The model runs in eval mode under :func:`torch.inference_mode`; each pass is timed
    with :func:`time.perf_counter`. ``warmup`` untimed passes come first (allocator and
    kernel selection). ``threads`` sets ``torch.set_num_threads`` for the measurement
    only; the previous setting and the model's train/eval mode are restored afterwards.

    Raises:
        ConfigError: a non-positive batch size, repeat count or thread count, or a bad
            ``input_shape``.
        ModelError: the model has parameters off the CPU, or its forward pass fails.
    """
    _check_settings(input_shape, (batch_size,), repeats, warmup, threads)
    timer = _Timer(model, input_shape, batch_size)
    with _measuring((model,), threads):
        for _ in range(warmup):
            timer.run()
        samples = [timer.run() for _ in range(repeats)]
        return _stats(batch_size, samples)


def compare_latency(
    before: nn.Module,
    after: nn.Module,
    input_shape: tuple[int, int, int],
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 20,
    *,
    warmup: int = 3,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[int, LatencySpeedup]:
    """Time ``before`` and ``after`` on the same inputs, alternating their runs.

    For each batch size the passes go before, after, before, after, ... (warm-up
    included), so a burst of background load lands on both models rather than on
    whichever happened to be timed second. Both models see the same input tensor.
    Arguments are as in :func:`measure_latency`.

    Returns:
        ``{batch_size: LatencySpeedup}`` in the order of ``batch_sizes`` (duplicates dropped).
    """
    sizes = tuple(dict.fromkeys(int(b) for b in batch_sizes))
    if not sizes:
        raise ConfigError("batch_sizes is empty; give at least one, e.g. (1, 64)")
    _check_settings(input_shape, sizes, repeats, warmup, threads)
    results: dict[int, LatencySpeedup] = {}
    where = torch.device(device)
    with _measuring((before, after), threads, where):
        for batch_size in sizes:
            before_ms, after_ms = _interleaved(
                before, after, input_shape, batch_size, repeats, warmup, where
            )
            stats_before = _stats(batch_size, before_ms)
            stats_after = _stats(batch_size, after_ms)
            results[batch_size] = LatencySpeedup(
                batch_size=batch_size,
                before=stats_before,
                after=stats_after,
                speedup=stats_before.median_ms / max(stats_after.median_ms, 1e-9),
            )
    return results


@dataclass(frozen=True)
class PairedSpeedup:
    """Speedup at one batch size from interleaved passes, with its spread."""

    batch_size: int
    speedup: float
    """Median of the original's passes over median of the pruned model's."""
    p10: float
    """10th percentile of the per-pair speedups (pass ``i`` of each)."""
    p90: float
    before_ms: float
    after_ms: float

    def as_dict(self) -> dict[str, float]:
        """``{"before_ms", "after_ms", "speedup", "p10", "p90"}``, as reports store it."""
        return {
            "before_ms": self.before_ms,
            "after_ms": self.after_ms,
            "speedup": self.speedup,
            "p10": self.p10,
            "p90": self.p90,
        }


def paired_speedups(
    before: nn.Module,
    after: nn.Module,
    input_shape: tuple[int, int, int],
    batch_sizes: Sequence[int] = (1, 64),
    repeats: int = 10,
    *,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> dict[int, PairedSpeedup]:
    """:func:`interleaved_ms` at every batch size, summarised as speedups with their spread."""
    results: dict[int, PairedSpeedup] = {}
    for batch in dict.fromkeys(int(b) for b in batch_sizes):
        first, second = interleaved_ms(
            before, after, input_shape, batch, repeats, threads=threads, device=device
        )
        pairs = np.array(first) / np.maximum(np.array(second), 1e-9)
        p10, p90 = np.percentile(pairs, [10.0, 90.0])
        before_ms, after_ms = float(np.median(first)), float(np.median(second))
        results[batch] = PairedSpeedup(
            batch, before_ms / max(after_ms, 1e-9), float(p10), float(p90), before_ms, after_ms
        )
    return results


def interleaved_ms(
    before: nn.Module,
    after: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    repeats: int,
    *,
    warmup: int = 2,
    threads: int | None = None,
    device: torch.device | str = "cpu",
) -> tuple[list[float], list[float]]:
    """The raw milliseconds of :func:`compare_latency` at one batch size: pass ``i`` of
    ``before`` ran just before pass ``i`` of ``after``, so their ratios pair up."""
    _check_settings(input_shape, (batch_size,), repeats, warmup, threads)
    where = torch.device(device)
    with _measuring((before, after), threads, where):
        return _interleaved(before, after, input_shape, batch_size, repeats, warmup, where)


# ------------------------------------------------------------------------ helpers


def _interleaved(
    before: nn.Module,
    after: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    repeats: int,
    warmup: int,
    where: torch.device,
) -> tuple[list[float], list[float]]:
    first = _Timer(before, input_shape, batch_size, device=where)
    second = _Timer(after, input_shape, batch_size, inputs=first.inputs, device=where)
    for _ in range(warmup):
        first.run()
        second.run()
    before_ms: list[float] = []
    after_ms: list[float] = []
    for _ in range(repeats):
        before_ms.append(first.run())
        after_ms.append(second.run())
    return before_ms, after_ms


class _Timer:
    """One model and one fixed input batch; ``run()`` returns milliseconds for one pass."""

    def __init__(
        self,
        model: nn.Module,
        input_shape: tuple[int, int, int],
        batch_size: int,
        inputs: torch.Tensor | None = None,
        device: torch.device = CPU,
    ) -> None:
        self.model = model
        if inputs is None:
            generator = torch.Generator().manual_seed(0)
            shape = (batch_size, *(int(d) for d in input_shape))
            inputs = torch.randn(shape, generator=generator).to(device)
        self.inputs = inputs
        self.sync = device.type == "cuda"

    def run(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            self.model(self.inputs)
            if self.sync:
                torch.cuda.synchronize()
        except Exception as exc:
            raise ModelError(
                f"{type(self.model).__name__} forward pass failed on a batch of shape "
                f"{tuple(self.inputs.shape)}: {type(exc).__name__}: {exc}; check the input_shape"
            ) from exc
        return (time.perf_counter() - start) * 1000.0


@contextmanager
def _measuring(
    models: Sequence[nn.Module], threads: int | None, where: torch.device = CPU
) -> Iterator[None]:
    """Eval mode, inference mode and the requested thread count; all restored on exit."""
    for model in models:
        device = next((p.device for p in model.parameters() if p.device.type != where.type), None)
        if device is not None:
            raise ModelError(
                f"{type(model).__name__} has parameters on {device}; latency is measured on "
                f"{where}: move the model there (model.to({str(where)!r}))"
            )
    modes = [model.training for model in models]
    previous_threads = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        for model in models:
            model.eval()
        with torch.inference_mode():
            yield
    finally:
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)
        torch.set_num_threads(previous_threads)


def _stats(batch_size: int, samples_ms: Sequence[float]) -> LatencyStats:
    values = np.asarray(samples_ms, dtype=np.float64)
    p10, median, p90 = np.percentile(values, [10.0, 50.0, 90.0])
    return LatencyStats(
        batch_size=batch_size,
        median_ms=float(median),
        p10_ms=float(p10),
        p90_ms=float(p90),
        repeats=len(values),
        threads=torch.get_num_threads(),
    )


def _check_settings(
    input_shape: Sequence[int],
    batch_sizes: Sequence[int],
    repeats: int,
    warmup: int,
    threads: int | None,
) -> None:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
        raise ConfigError(
            f"input_shape must be (channels, height, width) of positive ints, got {shape}; "
            "e.g. (1, 8, 8) for the digits data"
        )
    bad = [b for b in batch_sizes if b < 1]
    if bad:
        raise ConfigError(f"batch size must be >= 1, got {bad[0]}")
    if repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}; 20 gives a stable median")
    if warmup < 0:
        raise ConfigError(f"warmup must be >= 0, got {warmup}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1 or None (keep torch's setting), got {threads}")
