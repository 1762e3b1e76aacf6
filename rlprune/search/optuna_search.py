"""Optuna's samplers over per-unit keep-ratios: TPE, CMA-ES, and ``refine`` (TPE near a start).

Each trial is one episode of a :class:`~rlprune.search.base.FixedRatioPolicy` through the
env's budget clipping (``pip install 'rlprune[optuna]'``):

- ``tpe`` / ``cmaes``: Optuna's TPE and CMA-ES samplers over the task's keep range;
- :func:`refine`: a local TPE search within :data:`REFINE_WIDTH` of an evaluated
  configuration, screening on a share of the validation set, the best screened then
  scored in full (``transfer-refine`` and ``rlprune apply --refine``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..env.rollout import propose
from ..errors import ConfigError
from ..evaluation.candidates import Candidate, SearchResult
from ..evaluation.task import PruningTask
from .base import (
    BaselineMethod,
    Budget,
    FixedRatioPolicy,
    SearchMethod,
    SearchOptions,
    baseline_env,
    score_batch,
)

__all__ = [
    "CMAES",
    "REFINE_FIDELITY",
    "REFINE_FINALISTS",
    "REFINE_STARTUP",
    "REFINE_WIDTH",
    "TPE",
    "OptunaSearch",
    "Refine",
    "refine",
]

SamplerFactory = Callable[[Any, int], Any]
"""``factory(optuna, seed)``: an Optuna sampler (Optuna is imported only when a study runs)."""


@dataclass(frozen=True)
class OptunaSearch(BaselineMethod):
    """Optimise per-unit keep-ratios with an Optuna sampler over the task's keep range;
    each trial is one episode through the env's budget clipping (:func:`run_study`)."""

    sampler: SamplerFactory

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Spend the budget on the sampler's trials."""
        run_study(self.name, self.sampler, task, target, budget, seed)


def _import_optuna(name: str) -> Any:
    """Optuna, quiet; :class:`ConfigError` says how to install it."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise ConfigError(
            f"method {name!r} needs Optuna; install it with pip install 'rlprune[optuna]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _tell_start(
    optuna: Any, study: Any, task: PruningTask, start: Candidate, box: Sequence[tuple[float, float]]
) -> None:
    """Tell ``study`` the already evaluated ``start`` as its first trial (not evaluated
    again), its keep-ratios clipped into ``box``."""
    keep = np.asarray(start.channels, dtype=np.float64) / task.analysis.channels
    spaces: dict[str, Any] = {
        f"u{i}": optuna.distributions.FloatDistribution(a, b) for i, (a, b) in enumerate(box)
    }
    params = {
        f"u{i}": float(np.clip(k, a, b))
        for i, (k, (a, b)) in enumerate(zip(keep, box, strict=True))
    }
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=spaces, value=start.accuracy)
    )


def run_study(
    name: str,
    sampler_factory: SamplerFactory,
    task: PruningTask,
    target: float,
    budget: Budget,
    seed: int,
    *,
    bounds: Sequence[tuple[float, float]] | None = None,
    start: Candidate | None = None,
    val_images: int | None = None,
    on_batch: Callable[[], None] | None = None,
) -> None:
    """Spend ``budget`` on Optuna trials; the candidates land in the ledger.

    With K workers (:attr:`PruningTask.service`) K trials are asked for at once and told
    their scores together, so the samples depend on K (with one worker it is Optuna's
    sequential ``optimize``). ``bounds`` (one ``(low, high)`` per unit; default the task's
    keep range for every unit) is the search box; ``start``, an already evaluated
    candidate, is told to the study as its first trial without being evaluated again;
    ``val_images`` scores each trial on that many validation images (a fraction of an
    evaluation each); ``on_batch`` is called after each batch (progress)."""
    optuna = _import_optuna(name)
    fidelity = 1.0 if val_images is None else min(val_images, task.val_size) / task.val_size
    env = baseline_env(task, target)
    low, high = task.config.min_keep, task.config.max_keep
    units = len(task.analysis.units)
    box = list(bounds) if bounds is not None else [(low, high)] * units
    study = optuna.create_study(direction="maximize", sampler=sampler_factory(optuna, seed))
    if start is not None:
        _tell_start(optuna, study, task, start, box)

    while (n := budget.batch(fidelity)) > 0:  # one trial per worker in flight
        trials = [study.ask() for _ in range(n)]
        keeps = [[t.suggest_float(f"u{i}", a, b) for i, (a, b) in enumerate(box)] for t in trials]
        policies = [FixedRatioPolicy(k, env, low, high) for k in keeps]
        scored = score_batch(task, [propose(p, env) for p in policies], val_images)
        for trial, candidate in zip(trials, scored, strict=True):
            study.tell(trial, candidate.accuracy)
        if on_batch is not None:
            on_batch()


TPE = OptunaSearch(
    "tpe",
    "Optuna TPE over per-unit keep-ratios (needs rlprune[optuna]), best of N",
    lambda optuna, s: optuna.samplers.TPESampler(seed=s),
)
CMAES = OptunaSearch(
    "cmaes",
    "Optuna CMA-ES over per-unit keep-ratios (needs rlprune[optuna]), best of N",
    lambda optuna, s: optuna.samplers.CmaEsSampler(seed=s),
)


# --- refine: TPE near a start ----------------------------------------------------------

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


@dataclass(frozen=True)
class Refine(SearchMethod):
    """TPE within ``width`` of ``start``, screening then finalists (:func:`refine`)."""

    start: Candidate
    width: float = REFINE_WIDTH
    fidelity: float = REFINE_FIDELITY
    on_scored: Callable[[Sequence[Candidate]], None] | None = None

    def check(self, task: PruningTask, target: float, evals: int, options: SearchOptions) -> None:
        """The width's and fidelity's checks, then the request's."""
        if not 0.0 < self.width <= 1.0:
            raise ConfigError(f"refine width {self.width} must be in (0, 1]; e.g. {REFINE_WIDTH}")
        if not 0.0 < self.fidelity <= 1.0:
            raise ConfigError(
                f"refine fidelity {self.fidelity} must be in (0, 1]; e.g. {REFINE_FIDELITY}"
            )
        super().check(task, target, evals, options)

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Screen TPE's trials on a share of the validation set, then score the best in full
        (one stage of full evaluations when there is nothing to screen)."""
        evals = int(budget.evals)
        low, high = task.config.min_keep, task.config.max_keep
        keep = np.clip(
            np.asarray(self.start.channels, dtype=np.float64) / task.analysis.channels, low, high
        )
        bounds = [(max(low, k - self.width), min(high, k + self.width)) for k in keep]
        images = max(1, round(self.fidelity * task.val_size))
        finalists = min(REFINE_FINALISTS, max(1, evals // 4))
        screening = evals - finalists
        trials = int(np.floor(screening / (images / task.val_size) + 1e-9))
        staged = images < task.val_size and trials > finalists
        startup = max(REFINE_STARTUP, trials // 6) if staged else REFINE_STARTUP
        run_study(
            self.name,
            lambda optuna, s: optuna.samplers.TPESampler(seed=s, n_startup_trials=startup),
            task,
            target,
            Budget(task, screening if staged else evals, budget.since),
            seed,
            bounds=bounds,
            start=self.start,
            val_images=images if staged else None,
            on_batch=lambda: self._progress(task, budget),
        )
        if staged:
            self._score_finalists(task, budget, finalists)

    def _score_finalists(self, task: PruningTask, budget: Budget, finalists: int) -> None:
        """Score the ``finalists`` best-screened configurations (never the start) in full;
        the start itself (cached: charged, not run again) when every trial landed on it,
        as budget clipping can make it on a small network, so the result is a full score."""
        screened: dict[tuple[int, ...], float] = {}
        for candidate in task.ledger[budget.since :]:
            if candidate.channels != self.start.channels:
                screened.setdefault(candidate.channels, candidate.accuracy)
        best = sorted(screened, key=lambda c: -screened[c])[:finalists] or [self.start.channels]
        for at in range(0, len(best), task.service.workers):  # a batch each: progress
            score_batch(task, best[at : at + task.service.workers])
            self._progress(task, budget)

    def _progress(self, task: PruningTask, budget: Budget) -> None:
        if self.on_scored is not None:
            self.on_scored(task.ledger[budget.since :])


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
    method = Refine(
        "refine",
        "Optuna TPE near a start: screening, then finalists in full",
        start,
        width,
        fidelity,
        on_scored,
    )
    return method.search(task, target, evals, seed)
