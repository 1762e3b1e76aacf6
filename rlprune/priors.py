"""Prior allocations: channel counts per unit that meet a MACs target, without a search.

Each one is a practitioner's answer to "how much of each layer to keep": one ratio for
every unit (:func:`uniform_channels`), torch-pruning's global magnitude ranking
(:func:`magnitude_channels`), or a greedy allocation from per-unit sensitivity curves
(:func:`sensitivity_channels`, whose probes are evaluations and so are charged). The
baselines evaluate them as they are; the env's residual action mode starts from one and
lets a policy correct it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch_pruning as tp

from .errors import ConfigError
from .evaluation.task import PruningTask
from .mdp.settings import PRIORS
from .pruning.groups import build_graph, iter_groups
from .pruning.macs import ChannelCounts

__all__ = [
    "SENSITIVITY_RATIOS",
    "allocate_by_sensitivity",
    "curve_arrays",
    "group_scores",
    "importance_statistics",
    "low_fidelity",
    "magnitude_channels",
    "magnitude_scores",
    "prior_channels",
    "sensitivity_channels",
    "sensitivity_curves",
    "snap_count",
    "top_up",
    "uniform_channels",
    "uniform_keep_ratio",
    "use_budget",
]

SENSITIVITY_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75)
"""Keep-ratios at which each unit is probed alone for its sensitivity curve."""


def snap_count(options: np.ndarray, count: float) -> int:
    """The allowed channel count nearest to ``count`` (ties: the smaller)."""
    return int(options[int(np.argmin(np.abs(options - count)))])


def uniform_keep_ratio(task: PruningTask, target: float, iterations: int = 40) -> float:
    """The largest single keep-ratio for every unit whose pruned model meets ``target``.

    Bisection on the ratio with the exact MACs model (no candidate is evaluated).
    """
    budget = target * task.cost_total
    full = task.analysis.channels

    def macs(ratio: float) -> float:
        counts = np.array([task.unit_count(ratio, i) for i in range(len(full))])
        return task.cost_model.macs(counts)

    low, high = task.config.min_keep, task.config.max_keep
    if macs(high) <= budget:
        return high
    for _ in range(iterations):
        mid = (low + high) / 2
        if macs(mid) <= budget:
            low = mid
        else:
            high = mid
    return low


def uniform_channels(task: PruningTask, target: float) -> np.ndarray:
    """Channel counts with one keep-ratio for every unit (:func:`uniform_keep_ratio`)."""
    task.check_target(target)
    ratio = uniform_keep_ratio(task, target)
    channels = []
    for i, options in enumerate(task.candidates):
        n = task.unit_count(ratio, i)
        # the largest allowed count not above n, so the bisection's budget still holds
        below = options[options <= n]
        channels.append(int(below[-1]) if below.size else int(options[0]))
    return np.array(channels, dtype=np.int64)


def magnitude_scores(task: PruningTask, normalizer: str | None = "mean") -> list[np.ndarray]:
    """L1 group importance of every channel of every unit, as torch-pruning ranks them.

    ``tp.importance.GroupMagnitudeImportance(p=1)`` averages each channel's L1
    norm over the layers of its dependency group; the default ``"mean"``
    normalizer divides a unit's scores by their mean, which makes units of
    different widths and fan-ins comparable in one global ranking (as
    ``MetaPruner(global_pruning=True)`` does). It also makes the ranking
    invariant to scaling a whole unit: only the spread of a unit's channel
    norms decides how much of it goes. ``normalizer=None`` ranks raw norms.
    """
    scores = group_scores(task, tp.importance.GroupMagnitudeImportance(p=1, normalizer=normalizer))
    missing = [u.name for u, s in zip(task.analysis.units, scores, strict=True) if s is None]
    if missing:
        raise ValueError(f"no magnitude scores for units {missing}")
    return [s for s in scores if s is not None]


def group_scores(task: PruningTask, scorer: Any) -> list[np.ndarray | None]:
    """A torch-pruning importance ``scorer`` applied to every unit's dependency group:
    one score per channel, or ``None`` where the scorer finds nothing to score (say, a
    BatchNorm-scale importance on a unit without BatchNorm)."""
    surgeon = task.surgeon
    if surgeon is not None:  # the groups of the analysis's one trace
        pairs = [(surgeon.groups[k], surgeon.plans[k].info) for k in surgeon.groups]
    else:
        graph = build_graph(task.model, task.example_inputs)
        pairs = list(iter_groups(graph, task.model, task.config.ignored_layers))
    by_layer: dict[str, np.ndarray | None] = {}
    for group, info in pairs:
        with torch.no_grad():
            scores = scorer(group)
        for name in info.out_modules:
            by_layer[name] = None if scores is None else scores.detach().cpu().double().numpy()
    result: list[np.ndarray | None] = []
    for unit in task.analysis.units:
        unit_scores = by_layer.get(unit.name)
        if unit_scores is not None and len(unit_scores) != unit.out_channels:
            raise ValueError(
                f"{unit.name}: {len(unit_scores)} scores for {unit.out_channels} channels"
            )
        result.append(unit_scores)
    return result


def importance_statistics(scores: np.ndarray | None) -> tuple[float, float]:
    """``(gini, weak_half_share)`` of one unit's channel importances: how unequal they are
    (0 = all equal, towards 1 = a few channels hold all of it) and the share of the total
    held by the weakest half. ``(0, 0.5)``, as for equal channels, when there are none."""
    if scores is None or len(scores) == 0:
        return 0.0, 0.5
    values = np.sort(np.abs(np.asarray(scores, dtype=np.float64)))
    total = values.sum()
    if total <= 0:
        return 0.0, 0.5
    n = len(values)
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ values / (n * total))
    weak = float(values[: n // 2].sum() / total) if n > 1 else 0.5
    return gini, weak


def magnitude_channels(
    task: PruningTask, target: float, normalizer: str | None = "mean"
) -> np.ndarray:
    """Channel counts from global magnitude pruning at ``target`` (nothing is evaluated).

    Every channel is ranked by :func:`magnitude_scores`; the lowest-ranked are
    removed until the exact MACs model meets the budget (binary search on how
    many). Each unit keeps at least its lowest allowed count (its best channels
    are never in the ranking) and at most its highest, and counts snap to the
    allowed values (``round_to``).
    """
    task.check_target(target)
    budget = target * task.cost_total
    full = task.analysis.channels
    scores = magnitude_scores(task, normalizer)
    # removable channels of each unit, weakest first; the first (full - max) always go
    pool_score: list[float] = []
    pool_unit: list[int] = []
    forced = full - task.max_channels
    for i, s in enumerate(scores):
        order = np.sort(s, kind="stable")
        removable = order[int(forced[i]) : int(full[i] - task.min_channels[i])]
        pool_score.extend(removable.tolist())
        pool_unit.extend([i] * len(removable))
    ranking = np.lexsort((np.arange(len(pool_score)), np.array(pool_score)))
    ranked_units = np.array(pool_unit, dtype=np.int64)[ranking]

    def channels_after(k: int) -> np.ndarray:
        removed = forced + np.bincount(ranked_units[:k], minlength=len(full))
        return np.array(
            [snap_count(opts, n) for opts, n in zip(task.candidates, full - removed, strict=True)],
            dtype=np.int64,
        )

    def fits(k: int) -> bool:
        return task.cost_model.macs(channels_after(k)) <= budget

    low, high = 0, len(ranked_units)
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    return channels_after(low)


def curve_arrays(
    curves: Sequence[Sequence[tuple[int, float]]], *, monotone: bool = False
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each ``(channels, accuracy)`` curve as sorted channel counts and their accuracy
    (repeated counts averaged), for ``np.interp``; ``monotone`` as in
    :func:`allocate_by_sensitivity`."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for curve in curves:
        points: dict[int, list[float]] = {}
        for n, acc in curve:
            points.setdefault(int(n), []).append(float(acc))
        counts = sorted(points)
        xs.append(np.array(counts, dtype=np.float64))
        accuracy = np.array([np.mean(points[n]) for n in counts])
        ys.append(np.minimum.accumulate(accuracy[::-1])[::-1] if monotone else accuracy)
    return xs, ys


def allocate_by_sensitivity(
    task: PruningTask,
    target: float,
    curves: Sequence[Sequence[tuple[int, float]]],
    *,
    monotone: bool = False,
) -> np.ndarray:
    """Greedy allocation: lower the unit whose next allowed count costs least accuracy per MAC.

    ``curves[i]`` holds ``(channels, accuracy)`` points for unit ``i`` pruned
    alone; accuracy in between is interpolated linearly (flat beyond the ends).
    Every unit starts at its largest allowed count; a drop that raises the
    interpolated accuracy counts as free. Stops once the exact MACs model meets
    the target.

    ``monotone`` first makes every curve non-decreasing in channels, pessimistically
    (a point never scores above a point with fewer channels removed). Low-fidelity
    probes need it: their noise is the size of most units' true drop, and without it a
    lucky probe makes a unit look free to prune.
    """
    task.check_target(target)
    budget = target * task.cost_total
    mac_model = task.cost_model
    xs, ys = curve_arrays(curves, monotone=monotone)
    channels = np.array(task.max_channels, dtype=np.int64)
    macs = mac_model.macs(channels)
    while macs > budget:
        best: tuple[float, float, int] | None = None
        for i, options in enumerate(task.candidates):
            position = int(np.searchsorted(options, channels[i]))
            if position == 0:
                continue
            lower = channels.copy()
            lower[i] = options[position - 1]
            saved = macs - mac_model.macs(lower)
            drop = float(np.interp(channels[i], xs[i], ys[i]) - np.interp(lower[i], xs[i], ys[i]))
            cost = max(drop, 0.0) / max(saved, 1e-12)
            key = (cost, -saved, i)
            if best is None or key < best:
                best = key
        if best is None:
            break  # every unit at its minimum: check_target says this meets the budget
        i = best[2]
        channels[i] = task.candidates[i][int(np.searchsorted(task.candidates[i], channels[i])) - 1]
        macs = mac_model.macs(channels)
    return channels


def sensitivity_curves(
    task: PruningTask,
    ratios: Sequence[float] = SENSITIVITY_RATIOS,
    val_images: int | None = None,
) -> list[list[tuple[int, float]]]:
    """Per-unit ``(channels, accuracy)`` curves: each unit pruned alone to each ratio.

    Units x ratios evaluations through :meth:`PruningTask.evaluate` (each charged, at
    ``val_images`` fidelity), plus the unpruned model's accuracy at full width, which is
    a property of the task and not charged. Memoised in ``task.memo`` until the next
    :meth:`PruningTask.reset_search`, so one search pays for them once.
    """
    if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
        raise ConfigError(f"sensitivity ratios {tuple(ratios)} must be in (0, 1]; e.g. (0.5,)")
    key = ("sensitivity_curves", tuple(ratios), val_images)
    cached = task.memo.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    full = task.analysis.channels
    base = task.base_accuracy(val_images)
    probes = []
    for i, options in enumerate(task.candidates):
        for ratio in ratios:
            channels = np.array(full, dtype=np.int64)
            channels[i] = snap_count(options, ratio * full[i])
            probes.append(channels)
    task.prefetch(probes, val_images)  # all at once on the task's workers
    curves: list[list[tuple[int, float]]] = []
    for i, options in enumerate(task.candidates):
        curve = [(int(full[i]), base)]
        for ratio in ratios:
            channels = np.array(full, dtype=np.int64)
            channels[i] = snap_count(options, ratio * full[i])
            curve.append((int(channels[i]), task.evaluate(channels, val_images).accuracy))
        curves.append(curve)
    task.memo[key] = curves
    return curves


def sensitivity_channels(
    task: PruningTask, target: float, val_images: int | None = None
) -> np.ndarray:
    """:func:`allocate_by_sensitivity` on :func:`sensitivity_curves` (probes charged); with
    low-fidelity probes (``val_images`` below the validation split) the curves are made
    monotone first."""
    curves = sensitivity_curves(task, val_images=val_images)
    return allocate_by_sensitivity(task, target, curves, monotone=low_fidelity(task, val_images))


def low_fidelity(task: PruningTask, val_images: int | None) -> bool:
    """Whether probes on ``val_images`` images score fewer than the whole validation split
    (their curves are then made monotone before use)."""
    return val_images is not None and val_images < task.val_size


def top_up(
    task: PruningTask, channels: ChannelCounts, target: float, order: Sequence[int]
) -> np.ndarray:
    """Raise units, in ``order``, one allowed step at a time while the exact MACs model
    still meets ``target``: the configuration then uses its budget (no unit in ``order``
    can grow without breaking it). A configuration that already does is returned as is."""
    budget = target * task.cost_total
    result = np.array(channels, dtype=np.int64)
    for i in order:
        options = task.candidates[i]
        position = int(np.searchsorted(options, result[i]))
        while position + 1 < len(options):
            trial = result.copy()
            trial[i] = options[position + 1]
            if task.cost_model.macs(trial) > budget:
                break
            result, position = trial, position + 1
    return result


def use_budget(task: PruningTask, channels: ChannelCounts, target: float) -> np.ndarray:
    """``channels`` topped up (:func:`top_up`) to use the budget, the units it keeps the
    largest share of first: what a heuristic leaves unspent goes back to the network."""
    keep = np.asarray(channels, dtype=np.float64) / task.analysis.channels
    return top_up(task, channels, target, [int(i) for i in np.argsort(-keep, kind="stable")])


def prior_channels(
    task: PruningTask, target: float, prior: str, val_images: int | None = None
) -> np.ndarray:
    """The channel counts of the prior allocation named ``prior`` (one of :data:`PRIORS`),
    topped up (:func:`top_up`, the units it keeps most of first) so that it uses its budget.

    ``val_images`` is the fidelity of the sensitivity probes (ignored by the others).
    """
    if prior not in PRIORS:
        raise ConfigError(f"unknown prior {prior!r}; choose one of: {', '.join(PRIORS)}")
    key = ("prior", prior, float(target), val_images)
    cached = task.memo.get(key)
    if cached is None:
        if prior == "uniform":
            cached = uniform_channels(task, target)
        elif prior == "magnitude":
            cached = magnitude_channels(task, target)
        else:
            cached = sensitivity_channels(task, target, val_images)
        cached = use_budget(task, cached, target)
        task.memo[key] = cached
    return np.array(cached, dtype=np.int64)
