"""Heuristic and random baselines, speaking the same ``predict(obs, deterministic)`` as agents.

A baseline decides keep-ratios per unit. Policies (:class:`RandomPolicy`,
:class:`FixedRatioPolicy`) run through the environment, which applies the same
rounding and budget clipping as for a learned policy, so one evaluation loop
(:func:`rlprune.env.rollout.rollout`) serves every method.

The search methods compared with agents at equal cost share one signature,
``search_xxx(task, target, evals, seed) -> SearchResult``, and are listed in
:data:`BASELINES`:

- ``random``: random keep-ratios through the env, best of ``evals`` episodes;
- ``uniform``: one keep-ratio for every unit (1 evaluation);
- ``magnitude``: torch-pruning's global ranking of L1 group importance (1 evaluation);
- ``sensitivity``: per-unit sensitivity curves, then a greedy allocation
  (units x ratios + 1 evaluations).

Every method meets the MACs budget: its best candidate is chosen among those within
it (:func:`rlprune.core.candidates.within_budget`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch_pruning as tp

from ..core.budget import ChannelCounts
from ..core.candidates import Candidate, SearchResult, best_of, within_budget
from ..core.prune import build_graph, iter_groups, keep_count
from ..core.task import PruningTask
from ..env.features import FEATURES, keep_to_action
from ..env.pruning_env import PruningEnv
from ..env.rollout import rollout
from ..errors import BudgetError, ConfigError

__all__ = [
    "BASELINES",
    "SENSITIVITY_RATIOS",
    "BaselineMethod",
    "FixedRatioPolicy",
    "RandomPolicy",
    "allocate_by_sensitivity",
    "get_baseline",
    "magnitude_channels",
    "magnitude_scores",
    "play",
    "search_magnitude",
    "search_random",
    "search_sensitivity",
    "search_uniform",
    "sensitivity_min_evals",
    "uniform_channels",
    "uniform_keep_ratio",
]

_POSITION = FEATURES.index("position")

SENSITIVITY_RATIOS: tuple[float, ...] = (0.25, 0.5, 0.75)
"""Keep-ratios at which :func:`search_sensitivity` probes each unit alone."""


class FixedRatioPolicy:
    """Plays a fixed keep-ratio per unit, reading the unit index from the observation."""

    def __init__(self, keep_ratios: Sequence[float], min_keep: float, max_keep: float) -> None:
        self.keep_ratios = tuple(float(k) for k in keep_ratios)
        self.min_keep = min_keep
        self.max_keep = max_keep

    def predict(
        self, observation: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """The action for the unit ``observation`` describes."""
        n = len(self.keep_ratios)
        index = min(int(round(float(observation[_POSITION]) * n)), n - 1)
        action = keep_to_action(self.keep_ratios[index], self.min_keep, self.max_keep)
        return np.array([action], dtype=np.float32), None


class RandomPolicy:
    """Plays a uniform random action in ``[low, high]`` from its own seeded generator.

    ``deterministic`` is ignored: this policy *is* a random search, and a seed
    fixes its whole sequence of actions.
    """

    def __init__(self, seed: int = 0, low: float = -1.0, high: float = 1.0) -> None:
        if not -1.0 <= low <= high <= 1.0:
            raise ConfigError(f"random action range [{low}, {high}] must lie within [-1, 1]")
        self.seed = seed
        self.low = low
        self.high = high
        self.rng = np.random.default_rng(seed)

    def predict(
        self, observation: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """A random action (the observation is not read)."""
        action = self.rng.uniform(self.low, self.high)
        return np.array([action], dtype=np.float32), None


def play(task: PruningTask, channels: ChannelCounts, target: float) -> Candidate:
    """Evaluate a fixed configuration the way agents are evaluated: a
    :class:`FixedRatioPolicy` plays it through the env with ``predict()``.

    ``fill_budget`` is off so the env keeps the configuration as given (it already
    meets the target, so the upper bound never binds)."""
    policy = FixedRatioPolicy(
        [int(n) / u.out_channels for n, u in zip(channels, task.analysis.units, strict=True)],
        task.config.min_keep,
        task.config.max_keep,
    )
    return rollout(policy, PruningEnv(task=task, target=target, fill_budget=False))


def uniform_keep_ratio(task: PruningTask, target: float, iterations: int = 40) -> float:
    """The largest single keep-ratio for every unit whose pruned model meets ``target``.

    Bisection on the ratio with the exact MACs model (no candidate is evaluated).
    """
    budget = target * task.analysis.macs
    full = task.analysis.channels

    def macs(ratio: float) -> float:
        counts = np.array([keep_count(ratio, int(c), task.config.round_to) for c in full])
        return task.analysis.mac_model.macs(counts)

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


# --- the search-method registry ------------------------------------------------------

SearchMethod = Callable[[PruningTask, float, int, int], SearchResult]
"""``search(task, target, evals, seed) -> SearchResult``."""


@dataclass(frozen=True)
class BaselineMethod:
    """A search method compared with agents at equal cost."""

    name: str
    search: SearchMethod
    """``search(task, target, evals, seed)``: spends at most ``evals`` evaluations."""
    min_evals: Callable[[PruningTask], int]
    """The fewest evaluations the method needs on a task."""
    description: str
    seeded: bool = True
    """False for deterministic methods: every seed gives the same result."""


class _RecordingTask(PruningTask):
    """A view of a task that logs every evaluation request.

    It shares the task's model, cache and timings, so cached candidates are
    reused, but every request is charged, as :mod:`rlprune.core.candidates` counts cost.
    """

    def __init__(self, task: PruningTask) -> None:
        super().__init__(**{f.name: getattr(task, f.name) for f in dataclasses.fields(task)})
        self.history: list[Candidate] = []

    def evaluate(self, channels: ChannelCounts) -> Candidate:
        candidate = super().evaluate(channels)
        self.history.append(candidate)
        return candidate


def _check_request(
    name: str, task: PruningTask, target: float, evals: int, needed: int = 1, why: str = ""
) -> None:
    """Raise for an unreachable target or fewer than ``needed`` evaluations."""
    task.check_target(target)
    if evals < needed:
        noun = "evaluation" if needed == 1 else "evaluations"
        raise ConfigError(
            f"method {name!r} needs at least {needed} {noun}{why}, got {evals}; raise --evals"
        )


def _result(name: str, log: _RecordingTask, target: float, start: float) -> SearchResult:
    """Package a search: the best candidate among those within the budget."""
    feasible = [c for c in log.history if within_budget(c, target)]
    if not feasible:
        raise BudgetError(
            f"method {name!r} evaluated no candidate within target {target}; "
            "report this network's MACs model as a bug"
        )
    return SearchResult(
        method=name,
        best=best_of(feasible),
        history=tuple(log.history),
        evaluations=len(log.history),
        seconds=time.perf_counter() - start,
        target=target,
    )


def _snap(options: np.ndarray, count: float) -> int:
    """The allowed channel count nearest to ``count`` (ties: the smaller)."""
    return int(options[int(np.argmin(np.abs(options - count)))])


# --- random -----------------------------------------------------------------------


def search_random(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """Random search: ``evals`` episodes of :class:`RandomPolicy` through the env, best of N.

    Keep-ratios are uniform in ``[min_keep, max_keep]`` and pass through the same
    rounding and budget clipping as an agent's actions. Episode ``i`` resets the
    env with a seed derived from ``seed``; the actions come from one
    ``RandomPolicy(seed)``. Each episode is one evaluation when the MACs model
    is exact (the usual case). When it is approximate, the env's budget repair
    re-evaluates an overshooting candidate, each one charged; no episode starts
    once ``evals`` are spent, but the last one's repairs may exceed them.
    """
    start = time.perf_counter()
    _check_request("random", task, target, evals)
    log = _RecordingTask(task)
    env = PruningEnv(task=log, target=target)
    policy = RandomPolicy(seed)
    episode_seeds = np.random.SeedSequence(seed).generate_state(evals)
    for episode_seed in episode_seeds:
        if len(log.history) >= evals:
            break
        rollout(policy, env, seed=int(episode_seed))
    return _result("random", log, target, start)


# --- uniform ----------------------------------------------------------------------


def uniform_channels(task: PruningTask, target: float) -> np.ndarray:
    """Channel counts with one keep-ratio for every unit (:func:`uniform_keep_ratio`)."""
    task.check_target(target)
    ratio = uniform_keep_ratio(task, target)
    channels = []
    for c, options in zip(task.analysis.channels, task.candidates, strict=True):
        n = keep_count(ratio, int(c), task.config.round_to)
        # the largest allowed count not above n, so the bisection's budget still holds
        below = options[options <= n]
        channels.append(int(below[-1]) if below.size else int(options[0]))
    return np.array(channels, dtype=np.int64)


def search_uniform(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """One keep-ratio for every unit, the largest that meets the target.

    The configuration is evaluated directly (not through the env, whose
    fill-budget clipping would raise later units), so it costs exactly one
    evaluation whatever ``evals`` allows. ``seed`` is unused: the method is
    deterministic.
    """
    start = time.perf_counter()
    _check_request("uniform", task, target, evals)
    log = _RecordingTask(task)
    play(log, task.fit_measured(uniform_channels(task, target), target), target)
    return _result("uniform", log, target, start)


# --- global magnitude ---------------------------------------------------------------


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
    scorer = tp.importance.GroupMagnitudeImportance(p=1, normalizer=normalizer)
    graph = build_graph(task.model, task.example_inputs)
    by_layer: dict[str, np.ndarray] = {}
    for group, info in iter_groups(graph, task.model, task.config.ignored_layers):
        with torch.no_grad():
            scores = scorer(group)
        for name in info.out_modules:
            by_layer[name] = scores.detach().cpu().double().numpy()
    result = []
    for unit in task.analysis.units:
        scores = by_layer.get(unit.name)
        assert scores is not None and len(scores) == unit.out_channels, unit.name
        result.append(scores)
    return result


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
    budget = target * task.analysis.macs
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
            [_snap(opts, n) for opts, n in zip(task.candidates, full - removed, strict=True)],
            dtype=np.int64,
        )

    def fits(k: int) -> bool:
        return task.analysis.mac_model.macs(channels_after(k)) <= budget

    low, high = 0, len(ranked_units)
    while low < high:
        mid = (low + high) // 2
        if fits(mid):
            high = mid
        else:
            low = mid + 1
    return channels_after(low)


def search_magnitude(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """Global magnitude pruning (torch-pruning's global ranking, L1 group importance).

    One evaluation of :func:`magnitude_channels`; ``seed`` is unused.
    """
    start = time.perf_counter()
    _check_request("magnitude", task, target, evals)
    log = _RecordingTask(task)
    play(log, task.fit_measured(magnitude_channels(task, target), target), target)
    return _result("magnitude", log, target, start)


# --- sensitivity ------------------------------------------------------------------


def sensitivity_min_evals(task: PruningTask, ratios: Sequence[float] = SENSITIVITY_RATIOS) -> int:
    """Units x ratios probes, plus the final allocation."""
    return len(task.analysis.units) * len(ratios) + 1


def allocate_by_sensitivity(
    task: PruningTask,
    target: float,
    curves: Sequence[Sequence[tuple[int, float]]],
) -> np.ndarray:
    """Greedy allocation: lower the unit whose next allowed count costs least accuracy per MAC.

    ``curves[i]`` holds ``(channels, accuracy)`` points for unit ``i`` pruned
    alone; accuracy in between is interpolated linearly (flat beyond the ends).
    Every unit starts at its largest allowed count; a drop that raises the
    interpolated accuracy counts as free. Stops once the exact MACs model meets
    the target.
    """
    task.check_target(target)
    budget = target * task.analysis.macs
    mac_model = task.analysis.mac_model
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    for curve in curves:
        points: dict[int, list[float]] = {}
        for n, acc in curve:
            points.setdefault(int(n), []).append(float(acc))
        counts = sorted(points)
        xs.append(np.array(counts, dtype=np.float64))
        ys.append(np.array([np.mean(points[n]) for n in counts]))
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


def search_sensitivity(
    task: PruningTask,
    target: float,
    evals: int,
    seed: int,
    *,
    ratios: Sequence[float] = SENSITIVITY_RATIOS,
) -> SearchResult:
    """Per-unit sensitivity analysis, then a greedy allocation (AMC's hand-tuned baseline).

    Each unit is pruned alone (the others at full width) to each of ``ratios``,
    snapped to its allowed counts, and evaluated: units x ratios evaluations,
    all charged and in the history, even when snapping repeats a count. The
    unpruned model's validation accuracy anchors every curve at full width (it
    is a property of the task, not a candidate, and is not charged).
    :func:`allocate_by_sensitivity` then meets the target favouring the least
    sensitive units, and the allocation is evaluated (+1). Any evaluations left
    over are not spent. ``seed`` is unused: the method is deterministic.

    The probes usually exceed the budget; they are in the history but never the
    best candidate.
    """
    start = time.perf_counter()
    if not ratios or not all(0.0 < r <= 1.0 for r in ratios):
        raise ConfigError(f"sensitivity ratios {tuple(ratios)} must be in (0, 1]; e.g. (0.5,)")
    _check_request(
        "sensitivity",
        task,
        target,
        evals,
        sensitivity_min_evals(task, ratios),
        f" for this network ({len(task.analysis.units)} units x {len(ratios)} ratios + 1)",
    )
    log = _RecordingTask(task)
    full = task.analysis.channels
    base_accuracy = task.base_accuracy()
    curves: list[list[tuple[int, float]]] = []
    for i, options in enumerate(task.candidates):
        curve = [(int(full[i]), base_accuracy)]
        for ratio in ratios:
            channels = np.array(full, dtype=np.int64)
            channels[i] = _snap(options, ratio * full[i])
            curve.append((int(channels[i]), log.evaluate(channels).accuracy))
        curves.append(curve)
    channels = allocate_by_sensitivity(task, target, curves)
    play(log, task.fit_measured(channels, target), target)
    return _result("sensitivity", log, target, start)


BASELINES: dict[str, BaselineMethod] = {
    method.name: method
    for method in (
        BaselineMethod(
            "random",
            search_random,
            lambda task: 1,
            "random keep-ratios through the env's budget clipping, best of N episodes",
        ),
        BaselineMethod(
            "uniform",
            search_uniform,
            lambda task: 1,
            "one keep-ratio for every unit, the largest that meets the target (1 evaluation)",
        ),
        BaselineMethod(
            "magnitude",
            search_magnitude,
            lambda task: 1,
            "global L1 magnitude ranking of all channels, torch-pruning style (1 evaluation)",
            seeded=False,
        ),
        BaselineMethod(
            "sensitivity",
            search_sensitivity,
            sensitivity_min_evals,
            "per-unit sensitivity curves, then a greedy allocation (units x 3 + 1 evaluations)",
            seeded=False,
        ),
    )
}
"""Every baseline search method by name."""


def get_baseline(name: str) -> BaselineMethod:
    """The baseline called ``name``; :class:`ConfigError` lists the valid names otherwise."""
    if name not in BASELINES:
        raise ConfigError(
            f"unknown baseline method {name!r}; choose one of: {', '.join(sorted(BASELINES))}"
        )
    return BASELINES[name]
