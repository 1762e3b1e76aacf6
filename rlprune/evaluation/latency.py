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

The channel grid matters more than the form: on this project's 2-core AMD EPYC, copies
with channel counts off a multiple of 16 run up to 10 % slower than the unpruned network
at batch 64, and a smooth model cannot follow that. Unless ``round_to`` is given, each
grid of :data:`BLOCKS` is tried on a few copies and the one keeping the most MACs at the
target is the one searched and fitted (8 on CUDA, without a trial). Probes the first fit
puts at the target are then timed and added, so the model is accurate where searches end.
Richer forms (one weight per MACs term, per unit) fitted no better on 30 held-out
candidates of fmnist-resnet20 and fmnist-mobilenetv2 (they overfit the probes). A fitted
model is cached on disk under its key (network, device, batch, threads, torch version,
grids, target); a file whose key does not match is rebuilt, never reused.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..files import cache_dir
from ..pruning.analysis import ModelAnalysis
from ..pruning.macs import MacModel
from .timing import interleaved_ms

__all__ = [
    "BLOCKS",
    "NOISE_BOUND",
    "BlockTrial",
    "LatencyCheck",
    "LatencyKey",
    "LatencyModel",
    "cache_dir",
    "check_model",
    "device_name",
    "grid_words",
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

FOCUS_PROBES = 10
"""Pruned copies the first fit predicts at the target, timed and added to the fit: the
region every search ends in, where an error in the model is an error in the budget."""

BLOCKS = (1, 8, 16)
"""Channel grids (``round_to``) tried on a device whose grid is not given: each is timed on
:data:`TRIAL_PROBES` copies and the one keeping the most MACs at the target wins."""

TRIAL_PROBES = 8
"""Random pruned copies (plus the smallest) timed per grid in the trial."""

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
    grids: tuple[int, ...] = (1,)
    """The channel grids (``round_to``) offered: one given, or :data:`BLOCKS` to choose from."""
    target: float = 1.0
    """The budget the focus probes and the grid choice aimed at."""

    def file_name(self) -> str:
        """The cache file's name: a digest of every field."""
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return f"latency-{hashlib.sha256(text.encode()).hexdigest()[:24]}.json"


@dataclass(frozen=True)
class BlockTrial:
    """One channel grid timed on a few random copies: how low it goes and what it keeps."""

    block: int
    floor: float
    """Measured latency ratio with every unit at its fewest channels on this grid."""
    macs_at_target: float
    """MACs ratio a copy on this grid keeps at the target latency (a line through the
    timed copies, anchored at the original); 0 where the floor is above the target."""
    seconds: float


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
    block: int = 1
    """The channel grid (``round_to``) the model was fitted on and searches keep to."""
    trials: tuple[BlockTrial, ...] = ()
    """The grid trial, when several grids were offered."""

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
        fields = {k: v for k, v in data.items() if k not in ("key", "cost", "weights", "trials")}
        key = dict(data["key"])
        key["grids"] = tuple(int(b) for b in key.get("grids", (1,)))
        return cls(
            key=LatencyKey(**key),
            trials=tuple(BlockTrial(**t) for t in data.get("trials", ())),
            cost=MacModel(**cost),
            weights=(
                float(data["weights"][0]),
                float(data["weights"][1]),
                float(data["weights"][2]),
            ),
            **fields,
        )


def grid_words(model: LatencyModel) -> str:
    """The channel grid and, when chosen by timing, why: e.g. ``channel grid 16 (timed at
    target 0.5: grid 1 keeps 0.41 of the MACs, 8 0.45, 16 0.52)``."""
    if not model.trials:
        return f"channel grid {model.block}"
    kept = ", ".join(
        f"{t.block} {t.macs_at_target:.2f}" if t.macs_at_target > 0 else f"{t.block} none"
        for t in model.trials
    )
    return (
        f"channel grid {model.block} (timed at target {model.key.target:g}; MACs kept per "
        f"grid: {kept})"
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
    grids: Mapping[int, Sequence[np.ndarray]] | Sequence[np.ndarray],
    *,
    batch: int,
    device: torch.device,
    threads: int | None = None,
    target: float = 1.0,
    probes: int = PROBES,
    repeats: int = 5,
    cache: bool = True,
) -> LatencyModel:
    """The cached latency model for this network, device, batch and threads, or a new one.

    ``grids`` maps each channel grid (``round_to``) offered to every unit's candidate
    channel counts on it (a plain sequence: one grid, as given). With several, each is
    timed on a few random copies and the one keeping the most MACs at ``target`` is
    fitted (:class:`BlockTrial`). The fit times ``probes`` random copies and the smallest,
    each interleaved with the original, ``repeats`` times after a warm-up, then
    :data:`FOCUS_PROBES` copies the first fit puts at ``target``, and fits the three
    weights on all, reporting to every :func:`reporting` callback. It is written to
    :func:`cache_dir` (atomically) unless ``cache`` is false.

    Raises:
        ConfigError: ``batch`` or ``threads`` below 1, or the device is not there.
    """
    if batch < 1:
        raise ConfigError(f"latency batch must be at least 1, got {batch}; e.g. 1 or 64")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    offered = dict(grids) if isinstance(grids, Mapping) else {1: grids}
    key = LatencyKey(
        network=network_fingerprint(model, analysis),
        device=device_name(device),
        batch=int(batch),
        threads=int(threads or torch.get_num_threads()),
        torch=torch.__version__,
        grids=tuple(sorted(offered)),
        target=round(float(target), 4),
    )
    path = cache_dir() / "latency" / key.file_name()
    if cache:
        found = _read_cached(path, key)
        if found is not None:
            for callback in _progress:
                callback(0, 0, found)
            return found
    built = _Builder(model, analysis, prune, key, device, repeats).build(offered, probes)
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


class _Builder:
    """Times pruned copies of one network against the original and fits the model."""

    def __init__(
        self,
        model: nn.Module,
        analysis: ModelAnalysis,
        prune: Pruner,
        key: LatencyKey,
        device: torch.device,
        repeats: int,
    ) -> None:
        self.model, self.analysis, self.prune = model, analysis, prune
        self.key, self.device, self.repeats = key, device, repeats
        self.rng = np.random.default_rng(0)
        self.done = 0
        self.total = 0

    def time(self, configs: Sequence[np.ndarray]) -> list[tuple[float, float, float]]:
        """:func:`_time_probes`, reporting progress over the whole build."""
        offset = self.done

        def report(done: int, _total: int, _model: LatencyModel | None) -> None:
            self.done = offset + done
            for callback in _progress:
                callback(self.done, max(self.total, self.done), None)

        return _time_probes(
            self.model,
            self.analysis,
            self.prune,
            configs,
            self.key,
            self.device,
            self.repeats,
            report=report,
        )

    def build(self, grids: dict[int, Sequence[np.ndarray]], probes: int) -> LatencyModel:
        """Choose the grid (when offered several), time the probes, fit, focus, refit."""
        started = time.perf_counter()
        focus = FOCUS_PROBES if self.key.target < 1.0 else 0
        trial = TRIAL_PROBES + 1 if len(grids) > 1 else 0
        # the chosen grid's trial copies are part of the fit's probes
        self.total = trial * (len(grids) - 1) + probes + 1 + focus
        trials: list[BlockTrial] = []
        timed: list[tuple[float, float, float]] = []
        configs: list[np.ndarray] = []
        if len(grids) > 1:
            tried = {b: self._trial(b, c) for b, c in sorted(grids.items())}
            trials = [t for t, _, _ in tried.values()]
            block = _choose_block(trials)
            _, configs, timed = tried[block]
        else:
            block = next(iter(grids))
        candidates = grids[block]
        if not configs:
            configs = [np.array([c[0] for c in candidates], dtype=np.int64)]
        more = probe_channels(candidates, max(probes + 1 - len(configs), 0), self.rng)
        timed += self.time(more)
        configs += more
        pad, weights, errors = self._fit(configs, timed, block)
        if focus:
            near = at_target(
                self.analysis, candidates, weights, pad, self.key.target, focus, self.rng
            )
            timed += self.time(near)
            configs += near
            pad, weights, errors = self._fit(configs, timed, block)
        full_ms = float(np.median([first for first, _, _ in timed]))
        cost = dataclasses.replace(_as_mac_model(self.analysis, weights * full_ms), pad=pad)
        return LatencyModel(
            key=self.key,
            cost=cost,
            weights=tuple(float(w) * full_ms for w in weights),  # type: ignore[arg-type]
            full_ms=full_ms,
            min_ms=float(timed[0][1] * full_ms),
            error=float(np.median(errors)),
            error_p90=float(np.percentile(errors, 90)),
            noise=float(np.median([error for _, _, error in timed])),
            probes=len(configs),
            seconds=time.perf_counter() - started,
            block=block,
            trials=tuple(trials),
        )

    def _trial(
        self, block: int, candidates: Sequence[np.ndarray]
    ) -> tuple[BlockTrial, list[np.ndarray], list[tuple[float, float, float]]]:
        """Time the smallest copy and a few random ones on one grid."""
        started = time.perf_counter()
        rng = np.random.default_rng(1)  # the same draws on every grid
        configs = [
            np.array([c[0] for c in candidates], dtype=np.int64),
            *probe_channels(candidates, TRIAL_PROBES, rng),
        ]
        timed = self.time(configs)
        macs = self.analysis.mac_model
        full = macs.macs(self.analysis.channels)
        kept = np.array([macs.macs(c) / full for c in configs])
        ratios = np.array([ratio for _, ratio, _ in timed])
        # ratio - 1 = slope * (kept - 1): a line through the original
        slope = float(np.dot(kept - 1, ratios - 1) / max(np.dot(kept - 1, kept - 1), 1e-12))
        floor = float(ratios[0])
        if floor > self.key.target or slope <= 0:
            at = 0.0 if floor > self.key.target else 1.0
        else:
            at = float(np.clip(1 + (self.key.target - 1) / slope, kept[0], 1.0))
        return BlockTrial(block, floor, at, time.perf_counter() - started), configs, timed

    def _fit(
        self, configs: Sequence[np.ndarray], timed: Sequence[tuple[float, float, float]], block: int
    ) -> tuple[int, np.ndarray, np.ndarray]:
        """The channel block (``block`` on a coarse grid, else the padding that predicts
        best), the anchored weights and their leave-one-out errors."""
        ratios = np.array([ratio for _, ratio, _ in timed])
        fits = []
        for pad in (block,) if block > 1 else PADS:
            features = np.array([_features(self.analysis, c, pad) for c in configs])
            anchor = _features(self.analysis, self.analysis.channels, pad)
            errors = _loo_errors(features, ratios, anchor)
            fits.append((float(np.median(errors)), pad, features, anchor, errors))
        _, pad, features, anchor, errors = min(
            fits, key=lambda f: (f[0] * (1 + 0.1 * (f[1] > 1)), f[1])
        )
        return pad, _fit_anchored(features, ratios, anchor), errors


def _choose_block(trials: Sequence[BlockTrial]) -> int:
    """The grid keeping the most MACs at the target (a coarser one must keep 2 % more);
    the lowest floor when none reaches it."""
    reach = [t for t in trials if t.macs_at_target > 0]
    if not reach:
        return min(trials, key=lambda t: t.floor).block
    best = max(t.macs_at_target for t in reach)
    return min(t.block for t in reach if t.macs_at_target >= best - 0.02)


def at_target(
    analysis: ModelAnalysis,
    candidates: Sequence[np.ndarray],
    weights: np.ndarray,
    pad: int,
    target: float,
    count: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """``count`` random copies the fitted ``weights`` predict at ``target``: one level for the
    network, each unit jittered around it, the level bisected onto the target."""
    full = float(_features(analysis, analysis.channels, pad) @ weights)
    found = []
    for _ in range(count):
        jitter = rng.normal(0.0, 0.2, len(candidates))

        def pick(level: float, jitter: np.ndarray = jitter) -> np.ndarray:
            return np.array(
                [
                    c[int(round(np.clip(level + j, 0.0, 1.0) * (len(c) - 1)))]
                    for c, j in zip(candidates, jitter, strict=True)
                ],
                dtype=np.int64,
            )

        low, high = -0.5, 1.5
        for _ in range(30):
            mid = (low + high) / 2
            if float(_features(analysis, pick(mid), pad) @ weights) / full <= target:
                low = mid
            else:
                high = mid
        found.append(pick(low))
    return found


def _time_probes(
    model: nn.Module,
    analysis: ModelAnalysis,
    prune: Pruner,
    configs: Sequence[np.ndarray],
    key: LatencyKey,
    device: torch.device,
    repeats: int,
    report: Progress | None = None,
) -> list[tuple[float, float, float]]:
    """Each configuration pruned and timed interleaved with the original, pass for pass
    (load bursts slow both alike): the original's median ms, the median of the paired
    ratios, and that ratio's relative standard error. Reports progress (to ``report``
    when given, else to every :func:`reporting` callback)."""
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
        for callback in [report] if report else _progress:
            callback(done + 1, len(configs), None)
    return timed


def _features(analysis: ModelAnalysis, channels: np.ndarray, pad: int) -> np.ndarray:
    n = np.ceil(np.asarray(channels, dtype=np.float64) / pad) * pad
    return np.array([1.0, analysis.mac_model.macs(n), float(activation_weights(analysis) @ n)])


def _fit_anchored(features: np.ndarray, ratios: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``(c0, a, b)`` of ``ratio = c0 + a MACs + b acts`` with the unpruned network at
    exactly 1: the saved share ``1 - ratio`` is fitted as ``a ΔMACs + b Δacts`` (both
    weights non-negative), then ``c0 = 1 - a MACs_full - b acts_full`` (at least 0)."""
    from scipy.optimize import nnls  # 0.3 s to import: only when a model is fitted

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
