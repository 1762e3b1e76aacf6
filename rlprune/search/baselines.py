"""Heuristic and random baselines, speaking the same ``predict(obs, deterministic)`` as agents.

A baseline decides keep-ratios per unit. Policies (:class:`RandomPolicy`,
:class:`FixedRatioPolicy`) run through the environment, which applies the same
rounding and budget clipping as for a learned policy, so one evaluation loop
(:func:`rlprune.env.rollout.rollout`) serves every method.

The search methods compared with agents at equal cost share one signature,
``search_xxx(task, target, evals, seed) -> SearchResult``, and are listed in
:data:`BASELINES`. ``evals`` is the budget in full-evaluation equivalents; what a
method is charged is read from the task's ledger (:meth:`PruningTask.charged`):

- ``random``: random keep-ratios through the env, best of ``evals`` episodes;
- ``eagleeye``: EagleEye's random sampling: uniform keep-ratios, draws outside a window
  just below the target discarded before evaluation (free), the rest evaluated as drawn;
- ``tpe`` / ``cmaes``: Optuna's TPE and CMA-ES samplers over per-unit keep-ratios,
  each trial played through the env's budget clipping (``pip install 'rlprune[optuna]'``);
- ``uniform``: one keep-ratio for every unit (1 evaluation);
- ``magnitude``: torch-pruning's global ranking of L1 group importance (1 evaluation);
- ``sensitivity``: per-unit sensitivity curves, then a greedy allocation
  (units x ratios + 1 evaluations).

Every method meets the MACs budget: its best candidate is chosen among the
full-fidelity candidates within it (:func:`rlprune.evaluation.candidates.best_of`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..env.pruning_env import PruningEnv
from ..env.rollout import propose, rollout
from ..errors import BudgetError, ConfigError
from ..evaluation.candidates import Candidate, SearchResult
from ..evaluation.task import PruningTask
from ..mdp.features import keep_to_action
from ..mdp.settings import EnvConfig
from ..priors import (
    SENSITIVITY_RATIOS,
    allocate_by_sensitivity,
    magnitude_channels,
    sensitivity_curves,
    snap_count,
    uniform_channels,
    use_budget,
)
from ..pruning.macs import ChannelCounts

__all__ = [
    "BASELINES",
    "EAGLEEYE_WINDOW",
    "BaselineMethod",
    "baseline_env",
    "FixedRatioPolicy",
    "RandomPolicy",
    "get_baseline",
    "play",
    "REFINE_FIDELITY",
    "REFINE_FINALISTS",
    "REFINE_WIDTH",
    "refine",
    "search_cmaes",
    "search_eagleeye",
    "search_magnitude",
    "search_random",
    "search_sensitivity",
    "search_tpe",
    "search_uniform",
    "sensitivity_min_evals",
]

EAGLEEYE_WINDOW = 0.05
"""EagleEye keeps a draw whose MACs ratio lies in ``[(1 - window) * target, target]``."""


class FixedRatioPolicy:
    """Plays a fixed keep-ratio per unit; the env says which unit (``env.current_unit``).

    Reading the step from the env rather than the observation keeps this policy
    independent of the observation's feature set.
    """

    def __init__(
        self, keep_ratios: Sequence[float], env: PruningEnv, min_keep: float, max_keep: float
    ) -> None:
        self.keep_ratios = tuple(float(k) for k in keep_ratios)
        self.env = env
        self.min_keep = min_keep
        self.max_keep = max_keep

    def predict(
        self, observation: np.ndarray, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """The action for the env's current unit."""
        keep = self.keep_ratios[min(self.env.current_unit, len(self.keep_ratios) - 1)]
        action = keep_to_action(keep, self.min_keep, self.max_keep)
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


def baseline_env(task: PruningTask, target: float, *, fill_budget: bool = True) -> PruningEnv:
    """The env a baseline plays through: the task's action bounds and budget clipping, with
    feature set 1 and absolute actions whatever the task's config says (a baseline reads
    no observation, so it must not pay for the probes of feature set 2 or a prior)."""
    config = EnvConfig(task.config).derive(
        {"target": target, "fill_budget": fill_budget, "features": 1, "action_mode": "absolute"}
    )
    return PruningEnv(task=task, config=config)


def _fixed(task: PruningTask, env: PruningEnv, channels: ChannelCounts) -> FixedRatioPolicy:
    keep = [int(n) / u.out_channels for n, u in zip(channels, task.analysis.units, strict=True)]
    return FixedRatioPolicy(keep, env, env.config.task.min_keep, env.config.task.max_keep)


def play(task: PruningTask, channels: ChannelCounts, target: float) -> Candidate:
    """Evaluate a fixed configuration the way agents are evaluated: a
    :class:`FixedRatioPolicy` plays it through the env with ``predict()``.

    ``fill_budget`` is off so the env keeps the configuration as given (it already
    meets the target, so the upper bound never binds)."""
    env = baseline_env(task, target, fill_budget=False)
    return rollout(_fixed(task, env, channels), env)


# --- the search-method registry ------------------------------------------------------

SearchMethod = Callable[[PruningTask, float, int, int], SearchResult]
"""``search(task, target, evals, seed) -> SearchResult``."""


@dataclass(frozen=True)
class BaselineMethod:
    """A search method compared with agents at equal cost."""

    name: str
    search: SearchMethod
    """``search(task, target, evals, seed)``: spends at most ``evals`` full evaluations."""
    min_evals: Callable[[PruningTask], int]
    """The fewest full evaluations the method needs on a task."""
    description: str
    seeded: bool = True
    """False for deterministic methods: every seed gives the same result."""


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


# --- random -----------------------------------------------------------------------


def search_random(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """Random search: ``evals`` episodes of :class:`RandomPolicy` through the env, best of N.

    Keep-ratios are uniform in ``[min_keep, max_keep]`` and pass through the same
    rounding and budget clipping as an agent's actions. Episode ``i`` resets the
    env with a seed derived from ``seed``; the actions come from one
    ``RandomPolicy(seed)``. No episode starts once ``evals`` are charged.
    """
    start = time.perf_counter()
    _check_request("random", task, target, evals)
    since = len(task.ledger)
    env = baseline_env(task, target)
    policy = RandomPolicy(seed)
    seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(evals)]
    while seeds and (n := _batch(task, since, evals)) > 0:
        batch = [propose(policy, env, seed=s) for s in seeds[:n]]
        del seeds[:n]
        _score_batch(task, batch)
    return task.search_result("random", since, target, start)


def _batch(task: PruningTask, since: int, evals: float, fidelity: float = 1.0) -> int:
    """How many candidates of ``fidelity`` full evaluations each to propose next: one per
    worker, as many as the budget still allows."""
    room = int(np.floor((evals - task.charged(since)) / fidelity + 1e-9))
    return max(0, min(room, task.service.workers))


def _score_batch(
    task: PruningTask, batch: Sequence[ChannelCounts], val_images: int | None = None
) -> list[Candidate]:
    """Score ``batch`` in parallel (:meth:`PruningTask.prefetch`), then request each in
    order: the ledger is what sequential requests would have made it. ``val_images``
    scores on that many validation images (a screening evaluation; default all)."""
    task.prefetch(batch, val_images)
    return [task.evaluate(channels, val_images) for channels in batch]


def search_eagleeye(
    task: PruningTask,
    target: float,
    evals: int,
    seed: int,
    *,
    window: float = EAGLEEYE_WINDOW,
    max_draws: int = 1_000_000,
) -> SearchResult:
    """EagleEye-style random sampling (Li et al., ECCV 2020).

    Each unit's keep-ratio is drawn uniformly in ``[min_keep, max_keep]`` and snapped
    to an allowed channel count; the exact MACs model says whether the network lands in
    the window ``[(1 - window) * target, target]``. Draws outside it are discarded
    before any evaluation, so they cost nothing; each kept draw is evaluated as drawn
    (no budget clipping), one evaluation each.
    """
    start = time.perf_counter()
    _check_request("eagleeye", task, target, evals)
    if not 0.0 < window < 1.0:
        raise ConfigError(f"eagleeye window {window} must be in (0, 1); e.g. 0.05")
    since = len(task.ledger)
    rng = np.random.default_rng(seed)
    low, high = (1.0 - window) * target * task.analysis.macs, target * task.analysis.macs
    full = task.analysis.channels
    env = baseline_env(task, target, fill_budget=False)
    draws = 0

    def draw() -> np.ndarray:
        nonlocal draws
        while True:
            draws += 1
            if draws > max_draws:
                raise BudgetError(
                    f"eagleeye drew {max_draws} networks and none fell in the MACs window "
                    f"[{(1 - window) * target:.3f}, {target}]; widen the window or the keep range"
                )
            ratios = rng.uniform(task.config.min_keep, task.config.max_keep, size=len(full))
            channels = np.array(
                [
                    snap_count(o, r * c)
                    for o, r, c in zip(task.candidates, ratios, full, strict=True)
                ],
                dtype=np.int64,
            )
            if low <= task.analysis.mac_model.macs(channels) <= high:
                return channels

    while (n := _batch(task, since, evals)) > 0:
        batch = [draw() for _ in range(n)]
        _score_batch(
            task, [propose(_fixed(task, env, task.fit_measured(c, target)), env) for c in batch]
        )
    return task.search_result("eagleeye", since, target, start)


# --- Optuna: TPE and CMA-ES ----------------------------------------------------------


def _optuna_search(
    name: str,
    sampler_factory: Callable[[Any, int], Any],
    task: PruningTask,
    target: float,
    evals: int,
    seed: int,
) -> SearchResult:
    """Optimise per-unit keep-ratios with an Optuna sampler over the task's keep range;
    each trial is one episode through the env's budget clipping (:func:`_run_study`)."""
    begun = time.perf_counter()
    _check_request(name, task, target, evals)
    since = len(task.ledger)
    _run_study(name, sampler_factory, task, target, evals, seed)
    return task.search_result(name, since, target, begun)


def _run_study(
    name: str,
    sampler_factory: Callable[[Any, int], Any],
    task: PruningTask,
    target: float,
    evals: float,
    seed: int,
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
    start: Candidate | None = None,
    val_images: int | None = None,
    on_batch: Callable[[], None] | None = None,
) -> None:
    """Spend ``evals`` full evaluations on Optuna trials; the candidates land in the ledger.

    With K workers (:attr:`PruningTask.service`) K trials are asked for at once and told
    their scores together, so the samples depend on K (with one worker it is Optuna's
    sequential ``optimize``). ``bounds`` (one ``(low, high)`` per unit; default the task's
    keep range for every unit) is the search box; ``start``, an already evaluated
    candidate, is told to the study as its first trial without being evaluated again;
    ``val_images`` scores each trial on that many validation images (a fraction of an
    evaluation each); ``on_batch`` is called after each batch (progress)."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise ConfigError(
            f"method {name!r} needs Optuna; install it with pip install 'rlprune[optuna]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    since = len(task.ledger)
    fidelity = 1.0 if val_images is None else min(val_images, task.val_size) / task.val_size
    env = baseline_env(task, target)
    low, high = task.config.min_keep, task.config.max_keep
    units = len(task.analysis.units)
    box = list(bounds) if bounds is not None else [(low, high)] * units
    study = optuna.create_study(direction="maximize", sampler=sampler_factory(optuna, seed))
    if start is not None:
        keep = np.asarray(start.channels, dtype=np.float64) / task.analysis.channels
        spaces: dict[str, optuna.distributions.BaseDistribution] = {
            f"u{i}": optuna.distributions.FloatDistribution(a, b) for i, (a, b) in enumerate(box)
        }
        params = {
            f"u{i}": float(np.clip(k, a, b))
            for i, (k, (a, b)) in enumerate(zip(keep, box, strict=True))
        }
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=spaces, value=start.accuracy)
        )

    while (n := _batch(task, since, evals, fidelity)) > 0:  # one trial per worker in flight
        trials = [study.ask() for _ in range(n)]
        keeps = [[t.suggest_float(f"u{i}", a, b) for i, (a, b) in enumerate(box)] for t in trials]
        policies = [FixedRatioPolicy(k, env, low, high) for k in keeps]
        scored = _score_batch(task, [propose(p, env) for p in policies], val_images)
        for trial, candidate in zip(trials, scored, strict=True):
            study.tell(trial, candidate.accuracy)
        if on_batch is not None:
            on_batch()


def search_tpe(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """Optuna's TPE sampler over per-unit keep-ratios, through the env's budget clipping."""
    return _optuna_search(
        "tpe", lambda optuna, s: optuna.samplers.TPESampler(seed=s), task, target, evals, seed
    )


def search_cmaes(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """Optuna's CMA-ES sampler over per-unit keep-ratios, through the env's budget clipping."""
    return _optuna_search(
        "cmaes", lambda optuna, s: optuna.samplers.CmaEsSampler(seed=s), task, target, evals, seed
    )


REFINE_WIDTH = 0.25
"""How far, in keep-ratio, :func:`refine` searches either side of its starting point."""

REFINE_STARTUP = 5
"""The fewest random trials in the box before :func:`refine`'s TPE models the scores
(a sixth of the screening trials when that is more)."""

REFINE_FIDELITY = 0.25
"""The share of the validation set a :func:`refine` screening evaluation scores on: each
costs that much of a full evaluation, so a budget buys four times as many trials."""

REFINE_FINALISTS = 5
"""The most screened configurations :func:`refine` scores again on the whole validation
set (a quarter of its budget, at least one)."""


def refine(
    task: PruningTask,
    target: float,
    start: Candidate,
    evals: int,
    seed: int,
    *,
    width: float = REFINE_WIDTH,
    fidelity: float = REFINE_FIDELITY,
    on_scored: Callable[[Sequence[Candidate]], None] | None = None,
) -> SearchResult:
    """A local search from an evaluated configuration (say, a policy's zero-shot episode).

    Optuna's TPE over per-unit keep-ratios, each within ``width`` of ``start``'s (and the
    task's keep range), through the env's budget clipping; ``start`` is told to the study
    as its first trial, so it costs nothing again. Two stages share the ``evals`` full
    evaluations: TPE screens trials on a ``fidelity`` share of the validation set (each
    charged that share), then the best-screened configurations, ``min(REFINE_FINALISTS,
    evals // 4)`` of them and at least one, are scored on the whole set. Screening scores
    are a fixed random subset's, unbiased for the full score, so the start's full score is
    told beside them. ``fidelity=1`` (or a budget too small to screen) is one stage of full
    evaluations. The result's best is a full evaluation from this call: compare it with
    ``start``. ``on_scored`` receives the candidates scored so far after each batch (for a
    progress bar; charge them by :attr:`Candidate.fidelity`).
    """
    begun = time.perf_counter()
    if not 0.0 < width <= 1.0:
        raise ConfigError(f"refine width {width} must be in (0, 1]; e.g. {REFINE_WIDTH}")
    if not 0.0 < fidelity <= 1.0:
        raise ConfigError(f"refine fidelity {fidelity} must be in (0, 1]; e.g. {REFINE_FIDELITY}")
    _check_request("refine", task, target, evals)
    since = len(task.ledger)
    low, high = task.config.min_keep, task.config.max_keep
    keep = np.clip(np.asarray(start.channels, dtype=np.float64) / task.analysis.channels, low, high)
    bounds = [(max(low, k - width), min(high, k + width)) for k in keep]
    images = max(1, round(fidelity * task.val_size))
    share = images / task.val_size
    finalists = min(REFINE_FINALISTS, max(1, evals // 4))
    screening = evals - finalists
    trials = int(np.floor(screening / share + 1e-9))
    staged = images < task.val_size and trials > finalists
    startup = max(REFINE_STARTUP, trials // 6) if staged else REFINE_STARTUP

    def progress() -> None:
        if on_scored is not None:
            on_scored(task.ledger[since:])

    _run_study(
        "refine",
        lambda optuna, s: optuna.samplers.TPESampler(seed=s, n_startup_trials=startup),
        task,
        target,
        screening if staged else evals,
        seed,
        bounds=bounds,
        start=start,
        val_images=images if staged else None,
        on_batch=progress,
    )
    if staged:
        screened: dict[tuple[int, ...], float] = {}
        for candidate in task.ledger[since:]:
            if candidate.channels != start.channels:
                screened.setdefault(candidate.channels, candidate.accuracy)
        best = sorted(screened, key=lambda c: -screened[c])[:finalists]
        for at in range(0, len(best), task.service.workers):  # a batch each: progress
            _score_batch(task, best[at : at + task.service.workers])
            progress()
    return task.search_result("refine", since, target, begun)


# --- uniform and global magnitude ------------------------------------------------------


def search_uniform(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """One keep-ratio for every unit, the largest that meets the target.

    The configuration is played with ``fill_budget`` off (which would raise later
    units), so it costs exactly one evaluation whatever ``evals`` allows. ``seed`` is
    unused: the method is deterministic.
    """
    start = time.perf_counter()
    _check_request("uniform", task, target, evals)
    since = len(task.ledger)
    play(task, task.fit_measured(uniform_channels(task, target), target), target)
    return task.search_result("uniform", since, target, start)


def search_magnitude(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """Global magnitude pruning (torch-pruning's global ranking, L1 group importance).

    One evaluation of :func:`~rlprune.priors.magnitude_channels`; ``seed`` is unused.
    """
    start = time.perf_counter()
    _check_request("magnitude", task, target, evals)
    since = len(task.ledger)
    play(task, task.fit_measured(magnitude_channels(task, target), target), target)
    return task.search_result("magnitude", since, target, start)


# --- sensitivity ------------------------------------------------------------------


def sensitivity_min_evals(task: PruningTask, ratios: Sequence[float] = SENSITIVITY_RATIOS) -> int:
    """Units x ratios probes, plus the final allocation."""
    return len(task.analysis.units) * len(ratios) + 1


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
    snapped to its allowed counts, and evaluated at full fidelity
    (:func:`~rlprune.priors.sensitivity_curves`): units x ratios evaluations,
    all charged and in the history, even when snapping repeats a count.
    :func:`~rlprune.priors.allocate_by_sensitivity` then meets the target
    favouring the least sensitive units, the budget its last step leaves unspent is given
    back (:func:`~rlprune.priors.use_budget`: the same configuration as the
    residual env's ``sensitivity`` prior, which a policy's action 0 plays), and the
    allocation is evaluated (+1). Any
    evaluations left over are not spent. ``seed`` is unused: the method is deterministic.

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
    since = len(task.ledger)
    task.memo.clear()  # the method pays for its own probes
    channels = allocate_by_sensitivity(task, target, sensitivity_curves(task, ratios))
    channels = use_budget(task, channels, target)
    play(task, task.fit_measured(channels, target), target)
    return task.search_result("sensitivity", since, target, start)


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
            "eagleeye",
            search_eagleeye,
            lambda task: 1,
            "EagleEye random sampling: draws outside the MACs window discarded for free, best of N",
        ),
        BaselineMethod(
            "tpe",
            search_tpe,
            lambda task: 1,
            "Optuna TPE over per-unit keep-ratios (needs rlprune[optuna]), best of N",
        ),
        BaselineMethod(
            "cmaes",
            search_cmaes,
            lambda task: 1,
            "Optuna CMA-ES over per-unit keep-ratios (needs rlprune[optuna]), best of N",
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
