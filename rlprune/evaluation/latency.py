"""A network's latency as a function of per-unit channel counts, measured once per device.

Under ``metric: latency`` the target budgets measured inference time instead of MACs. The
env's action bound needs a prediction in microseconds, not a measurement per step, so
each network gets a :class:`LatencyModel`, in the spirit of HALP's latency table:

``latency(n) = c0 + a * MACs(n) + b * activations(n)``

``MACs(n)`` is the exact MACs model of the analysis, ``activations(n)`` the output
elements of every unit (``sum n_u * H_u * W_u``: memory traffic, the part MACs miss on
depthwise and small layers), ``c0`` the fixed per-op overhead that makes a half-MACs
model far from twice as fast at batch 1. The three weights are fitted by non-negative
least squares on measured probes: random pruned copies, each timed interleaved with the
original (so background load slows both alike) and recorded as a ratio to it. The model
has the MACs model's form (:class:`~rlprune.pruning.macs.MacModel`), so the action bound,
the priors and every search treat the two budgets alike, and it is non-decreasing in
every unit's channels.

Richer forms (one weight per MACs term, per unit) fitted no better on 30 held-out
candidates of fmnist-resnet20 and fmnist-mobilenetv2 (they overfit the probes), see
``experiments/latency_accuracy.py``. A fitted model is cached on disk under its key
(network, device, batch, threads, torch version); a file whose key does not match is
rebuilt, never reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import nnls
from torch import nn

from ..errors import ConfigError
from ..files import cache_dir
from ..pruning.analysis import ModelAnalysis
from ..pruning.macs import MacModel
from .timing import interleaved_ms

__all__ = [
    "NOISE_BOUND",
    "LatencyCheck",
    "LatencyKey",
    "LatencyModel",
    "cache_dir",
    "check_model",
    "device_name",
    "latency_model",
    "probe_channels",
    "reporting",
]

NOISE_BOUND = 0.05
"""Median relative standard error of the probes' timed ratios above which the fit warns."""

PADS = (1, 4, 8, 16)
"""Channel blocks tried: the fit keeps the one whose leave-one-out error is lowest (a block
above 1 must win by 10 %)."""

PROBES = 24
"""Random pruned copies timed to fit the model (plus the smallest network)."""

Pruner = Callable[[np.ndarray], nn.Module]
"""Channel counts of every unit -> a physically pruned copy of the network."""

Progress = Callable[[int, int, "LatencyModel | None"], None]
"""``(probes done, probes in all, model)``: called after each probe with ``None``, then once
with the model, built or loaded from the cache (``0, 0, model``)."""

_progress: list[Progress] = []


@contextmanager
def reporting(callback: Progress) -> Iterator[None]:
    """Report every latency model built or loaded inside the block to ``callback`` (the
    CLI's progress bar): building one takes tens of seconds."""
    _progress.append(callback)
    try:
        yield
    finally:
        _progress.remove(callback)


@dataclass(frozen=True)
class LatencyKey:
    """What a latency model is valid for; a cached model is reused only on an exact match."""

    network: str
    """Fingerprint of the architecture, input shape and unit widths."""
    device: str
    """``cpu: <processor>`` or ``cuda: <GPU name>``."""
    batch: int
    threads: int
    torch: str

    def file_name(self) -> str:
        """The cache file's name: a digest of every field."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"latency-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"


@dataclass(frozen=True)
class LatencyModel:
    """Predicted latency (ms) of the network pruned to given channel counts."""

    key: LatencyKey
    cost: MacModel
    """``const + linear + bilinear`` terms in ms, as the MACs model's in MACs."""
    weights: tuple[float, float, float]
    """``(c0 ms, ms per MAC, ms per activation element)``, as fitted."""
    full_ms: float
    """Measured median latency of the unpruned network."""
    min_ms: float
    """Measured median latency with every unit at its minimum."""
    error: float
    """Median absolute relative error on held-out probes (leave-one-out): the model's
    stated error."""
    error_p90: float
    """Its 90th percentile: a delivered model whose measured speedup is further from the
    predicted one than this gets a warning."""
    noise: float
    """Median relative standard error of a probe's timed ratio to the original (the
    coefficient of variation of its paired passes over the square root of their count)."""
    probes: int
    seconds: float
    """Wall time the build took (measuring and fitting)."""

    def predict(self, channels: Sequence[int] | np.ndarray) -> float:
        """Predicted latency in ms."""
        return self.cost.macs(np.asarray(channels))

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as the cache file stores it."""
        cost = {
            f.name: (v.tolist() if isinstance(v, np.ndarray) else v)
            for f in dataclasses.fields(self.cost)
            for v in [getattr(self.cost, f.name)]
        }
        data = dataclasses.asdict(self)
        data["cost"] = cost
        data["weights"] = list(self.weights)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyModel:
        """The inverse of :meth:`to_dict`."""
        cost = dict(data["cost"])
        for name in ("lin_unit", "bil_u", "bil_v"):
            cost[name] = np.asarray(cost[name], dtype=np.int64)
        for name in ("lin_coef", "bil_coef"):
            cost[name] = np.asarray(cost[name], dtype=np.float64)
        fields = {k: v for k, v in data.items() if k not in ("key", "cost", "weights")}
        return cls(
            key=LatencyKey(**data["key"]),
            cost=MacModel(**cost),
            weights=(
                float(data["weights"][0]),
                float(data["weights"][1]),
                float(data["weights"][2]),
            ),
            **fields,
        )


def device_name(device: torch.device) -> str:
    """``cuda: <GPU name>`` or ``cpu: <processor model>`` (from /proc/cpuinfo where readable)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type != "cpu":
        return device.type
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {name or platform.processor() or platform.machine()}"


def network_fingerprint(model: nn.Module, analysis: ModelAnalysis) -> str:
    """Architecture (the module tree's repr), input shape and unit widths, hashed."""
    text = repr(model) + repr(tuple(analysis.input_shape)) + repr(analysis.channels.tolist())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def activation_weights(analysis: ModelAnalysis) -> np.ndarray:
    """Output elements per kept channel of every unit (``H_out * W_out``)."""
    return np.array(
        [
            math.ceil(u.input_hw[0] / u.stride) * math.ceil(u.input_hw[1] / u.stride)
            for u in analysis.units
        ],
        dtype=np.float64,
    )


def probe_channels(
    candidates: Sequence[np.ndarray], count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``count`` random configurations: half with every unit drawn uniformly from its
    candidates, half around one network-wide level (as searches near a target propose)."""
    probes = []
    for i in range(count):
        if i % 2 == 0:
            probes.append(np.array([rng.choice(c) for c in candidates], dtype=np.int64))
            continue
        level = rng.uniform(0.0, 1.0)
        picks = []
        for c in candidates:
            at = np.clip(level + rng.normal(0.0, 0.15), 0.0, 1.0) * (len(c) - 1)
            picks.append(c[int(round(at))])
        probes.append(np.array(picks, dtype=np.int64))
    return probes


def latency_model(
    model: nn.Module,
    analysis: ModelAnalysis,
    prune: Pruner,
    candidates: Sequence[np.ndarray],
    *,
    batch: int,
    device: torch.device,
    threads: int | None = None,
    probes: int = PROBES,
    repeats: int = 5,
    cache: bool = True,
) -> LatencyModel:
    """The cached latency model for this network, device, batch and threads, or a new one.

    A new one times ``probes`` random pruned copies (and the smallest network), each
    interleaved with the original, ``repeats`` times after a warm-up, and fits the three
    weights, reporting to every :func:`reporting` callback. It is written to
    :func:`cache_dir` (atomically) unless ``cache`` is false.

    Raises:
        ConfigError: ``batch`` or ``threads`` below 1, or the device is not there.
    """
    if batch < 1:
        raise ConfigError(f"latency batch must be at least 1, got {batch}; e.g. 1 or 64")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    key = LatencyKey(
        network=network_fingerprint(model, analysis),
        device=device_name(device),
        batch=int(batch),
        threads=int(threads or torch.get_num_threads()),
        torch=torch.__version__,
    )
    path = cache_dir() / "latency" / key.file_name()
    if cache:
        found = _read_cached(path, key)
        if found is not None:
            for callback in _progress:
                callback(0, 0, found)
            return found
    built = _build(model, analysis, prune, candidates, key, device, probes, repeats)
    for callback in _progress:
        callback(built.probes, built.probes, built)
    if built.noise > NOISE_BOUND:
        warnings.warn(
            f"latency timings are noisy (median relative standard error {built.noise:.1%}, "
            f"bound {NOISE_BOUND:.0%}): the latency model may be off by more than its stated "
            f"{built.error:.1%}; measure on an idle machine or with fewer threads (--threads 1)",
            stacklevel=2,
        )
    if cache:
        _write_cached(path, built)
    return built


@dataclass(frozen=True)
class LatencyCheck:
    """A latency model against fresh measurements of random candidates."""

    predicted: tuple[float, ...]
    """Predicted latency ratio to the original, per candidate."""
    measured: tuple[float, ...]
    """Measured ratio: the candidate's median pass over the original's, timed interleaved."""
    seconds: float

    @property
    def errors(self) -> np.ndarray:
        """Absolute relative error of each prediction."""
        measured = np.asarray(self.measured, dtype=np.float64)
        errors: np.ndarray = np.abs(np.asarray(self.predicted) - measured) / measured
        return errors

    @property
    def median_error(self) -> float:
        """Median absolute relative error (the accuracy the issue's 10 % bound is about)."""
        return float(np.median(self.errors))


def check_model(
    latency: LatencyModel,
    model: nn.Module,
    analysis: ModelAnalysis,
    prune: Pruner,
    candidates: Sequence[np.ndarray],
    *,
    count: int = 30,
    repeats: int = 7,
    seed: int = 1,
    device: torch.device | str = "cpu",
) -> LatencyCheck:
    """Time ``count`` random candidates (a seed the fit did not use) interleaved with the
    original and compare with ``latency``'s prediction; both as ratios to the original, so
    the error is the budget's. Reports progress like the build."""
    started = time.perf_counter()
    configs = probe_channels(candidates, count, np.random.default_rng(seed + 1000))
    full = latency.predict(analysis.channels)
    timed = _time_probes(
        model, analysis, prune, configs, latency.key, torch.device(device), repeats
    )
    predicted = [latency.predict(channels) / full for channels in configs]
    measured = [ratio for _, ratio, _ in timed]
    return LatencyCheck(tuple(predicted), tuple(measured), time.perf_counter() - started)


# ------------------------------------------------------------------------ helpers


def _build(
    model: nn.Module,
    analysis: ModelAnalysis,
    prune: Pruner,
    candidates: Sequence[np.ndarray],
    key: LatencyKey,
    device: torch.device,
    probes: int,
    repeats: int,
) -> LatencyModel:
    """Time the probes and fit ``c0 + a MACs + b activations`` by non-negative least squares."""
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    smallest = np.array([c[0] for c in candidates], dtype=np.int64)
    configs = [smallest, *probe_channels(candidates, probes, rng)]
    timed = _time_probes(model, analysis, prune, configs, key, device, repeats)
    before = [first for first, _, _ in timed]
    ratios = [ratio for _, ratio, _ in timed]
    noise = [error for _, _, error in timed]
    full_ms = float(np.median(before))
    ratios_array = np.array(ratios)
    # the channel block the device's kernels work in: the padding that predicts best
    fits = []
    for pad in PADS:
        features = np.array([_features(analysis, c, pad) for c in configs])
        anchor = _features(analysis, analysis.channels, pad)
        errors = _loo_errors(features, ratios_array, anchor)
        fits.append((float(np.median(errors)), pad, features, anchor, errors))
    error, pad, features, anchor, errors = min(
        fits, key=lambda f: (f[0] * (1 + 0.1 * (f[1] > 1)), f[1])
    )
    weights = _fit_anchored(features, ratios_array, anchor)
    cost = dataclasses.replace(_as_mac_model(analysis, weights * full_ms), pad=pad)
    return LatencyModel(
        key=key,
        cost=cost,
        weights=tuple(float(w) * full_ms for w in weights),  # type: ignore[arg-type]
        full_ms=full_ms,
        min_ms=float(ratios_array[0] * full_ms),
        error=error,
        error_p90=float(np.percentile(errors, 90)),
        noise=float(np.median(noise)),
        probes=len(configs),
        seconds=time.perf_counter() - started,
    )


def _time_probes(
    model: nn.Module,
    analysis: ModelAnalysis,
    prune: Pruner,
    configs: Sequence[np.ndarray],
    key: LatencyKey,
    device: torch.device,
    repeats: int,
) -> list[tuple[float, float, float]]:
    """Each configuration pruned and timed interleaved with the original, pass for pass
    (load bursts slow both alike): the original's median ms, the median of the paired
    ratios, and that ratio's relative standard error. Reports progress."""
    original = model.to(device)
    c, h, w = (int(d) for d in analysis.input_shape)
    timed = []
    for done, channels in enumerate(configs):
        first, second = interleaved_ms(
            original,
            prune(channels).to(device),
            (c, h, w),
            key.batch,
            repeats,
            threads=key.threads,
            device=device,
        )
        paired = np.array(second) / np.array(first)
        error = float(np.std(paired) / np.mean(paired) / np.sqrt(len(paired)))
        timed.append((float(np.median(first)), float(np.median(paired)), error))
        for callback in _progress:
            callback(done + 1, len(configs), None)
    return timed


def _features(analysis: ModelAnalysis, channels: np.ndarray, pad: int) -> np.ndarray:
    n = np.ceil(np.asarray(channels, dtype=np.float64) / pad) * pad
    return np.array([1.0, analysis.mac_model.macs(n), float(activation_weights(analysis) @ n)])


def _fit_anchored(features: np.ndarray, ratios: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``(c0, a, b)`` of ``ratio = c0 + a MACs + b acts`` with the unpruned network at
    exactly 1: the saved share ``1 - ratio`` is fitted as ``a ΔMACs + b Δacts`` (both
    weights non-negative), then ``c0 = 1 - a MACs_full - b acts_full`` (at least 0)."""
    removed = anchor[1:] - features[:, 1:]
    scale = np.abs(removed).max(axis=0)
    scale[scale == 0] = 1.0
    ab, _ = nnls(removed / scale, 1.0 - ratios)
    ab = ab / scale
    variable = float(ab @ anchor[1:])
    if variable > 1.0:  # no room for a fixed part: every probe cheaper than its work
        ab = ab / variable
        variable = 1.0
    return np.array([1.0 - variable, *ab])


def _loo_errors(features: np.ndarray, ratios: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Absolute relative error of each probe predicted by a fit without it."""
    errors = []
    for i in range(len(ratios)):
        keep = np.arange(len(ratios)) != i
        w = _fit_anchored(features[keep], ratios[keep], anchor)
        errors.append(abs(float(features[i] @ w) - ratios[i]) / ratios[i])
    return np.array(errors)


def _as_mac_model(analysis: ModelAnalysis, weights: np.ndarray) -> MacModel:
    """``c0 + a MACs(n) + b acts(n)`` rewritten as constant, linear and bilinear terms."""
    c0, per_mac, per_act = (float(w) for w in weights)
    macs = analysis.mac_model
    units = np.arange(len(analysis.units), dtype=np.int64)
    return MacModel(
        const=c0 + per_mac * macs.const,
        lin_unit=np.concatenate([macs.lin_unit, units]),
        lin_coef=np.concatenate([per_mac * macs.lin_coef, per_act * activation_weights(analysis)]),
        bil_u=macs.bil_u.copy(),
        bil_v=macs.bil_v.copy(),
        bil_coef=per_mac * macs.bil_coef,
        exact=True,
    )


def _read_cached(path: Path, key: LatencyKey) -> LatencyModel | None:
    """The model cached at ``path`` if its key matches; else ``None`` (with a warning when
    a file is there but was made for another key or cannot be read)."""
    if not path.is_file():
        return None
    try:
        found = LatencyModel.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warnings.warn(f"latency model cache {path} is unreadable ({exc}); rebuilding", stacklevel=3)
        return None
    if found.key != key:
        warnings.warn(
            f"latency model cache {path} was made for {found.key}, not {key}; rebuilding",
            stacklevel=3,
        )
        return None
    return found


def _write_cached(path: Path, model: LatencyModel) -> None:
    """Write atomically: a temporary file renamed over the target."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".tmp-{os.getpid()}")
        temporary.write_text(json.dumps(model.to_dict(), indent=1))
        temporary.replace(path)
    except OSError as exc:
        warnings.warn(f"could not cache the latency model in {path.parent}: {exc}", stacklevel=3)
