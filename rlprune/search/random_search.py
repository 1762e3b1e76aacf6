"""Random sampling: random keep-ratios through the env, and EagleEye's windowed sampling.

- ``random``: :class:`RandomPolicy` plays episodes through the env's budget clipping,
  best of ``evals``;
- ``eagleeye``: EagleEye's random sampling: uniform keep-ratios, draws outside a window
  just below the target discarded before evaluation (free), the rest evaluated as drawn.

(The module is not called ``random``: that would read as the standard library's.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..env.rollout import propose
from ..errors import BudgetError, ConfigError
from ..evaluation.candidates import SearchResult
from ..evaluation.task import PruningTask
from ..priors import snap_count
from .base import (
    BaselineMethod,
    Budget,
    SearchOptions,
    baseline_env,
    fixed_policy,
    score_batch,
)

__all__ = [
    "EAGLEEYE",
    "EAGLEEYE_WINDOW",
    "RANDOM",
    "EagleEyeSearch",
    "RandomPolicy",
    "RandomSearch",
    "search_eagleeye",
    "search_random",
]

EAGLEEYE_WINDOW = 0.05
"""EagleEye keeps a draw whose MACs ratio lies in ``[(1 - window) * target, target]``."""


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


@dataclass(frozen=True)
class RandomSearch(BaselineMethod):
    """Random search: ``evals`` episodes of :class:`RandomPolicy` through the env, best of N.

    Keep-ratios are uniform in ``[min_keep, max_keep]`` and pass through the same
    rounding and budget clipping as an agent's actions. Episode ``i`` resets the
    env with a seed derived from ``seed``; the actions come from one
    ``RandomPolicy(seed)``. No episode starts once ``evals`` are charged.
    """

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Play random episodes, a batch per round, until the budget is spent."""
        env = baseline_env(task, target)
        policy = RandomPolicy(seed)
        seeds = [int(s) for s in np.random.SeedSequence(seed).generate_state(int(budget.evals))]
        while seeds and (n := budget.batch()) > 0:
            batch = [propose(policy, env, seed=s) for s in seeds[:n]]
            del seeds[:n]
            score_batch(task, batch)


@dataclass(frozen=True)
class EagleEyeSearch(BaselineMethod):
    """EagleEye-style random sampling (Li et al., ECCV 2020).

    Each unit's keep-ratio is drawn uniformly in ``[min_keep, max_keep]`` and snapped
    to an allowed channel count; the exact MACs model says whether the network lands in
    the window ``[(1 - window) * target, target]``. Draws outside it are discarded
    before any evaluation, so they cost nothing; each kept draw is evaluated as drawn
    (no budget clipping), one evaluation each.
    """

    window: float = EAGLEEYE_WINDOW
    max_draws: int = 1_000_000
    """Give up (:class:`BudgetError`) after this many draws in all."""

    def check(self, task: PruningTask, target: float, evals: int, options: SearchOptions) -> None:
        """The request's checks, then the window's."""
        super().check(task, target, evals, options)
        if not 0.0 < self.window < 1.0:
            raise ConfigError(f"eagleeye window {self.window} must be in (0, 1); e.g. 0.05")

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Evaluate in-window draws, a batch per round, until the budget is spent."""
        draws = self._draws_in_window(task, target, np.random.default_rng(seed))
        env = baseline_env(task, target, fill_budget=False)
        while (n := budget.batch()) > 0:
            batch = [next(draws) for _ in range(n)]
            score_batch(
                task,
                [
                    propose(fixed_policy(task, env, task.fit_measured(c, target)), env)
                    for c in batch
                ],
            )

    def _draws_in_window(
        self, task: PruningTask, target: float, rng: np.random.Generator
    ) -> Iterator[np.ndarray]:
        """Random configurations in the MACs window, from ``rng``, until ``max_draws``."""
        low = (1.0 - self.window) * target * task.cost_total
        high = target * task.cost_total
        full = task.analysis.channels
        draws = 0
        while True:
            draws += 1
            if draws > self.max_draws:
                raise BudgetError(
                    f"eagleeye drew {self.max_draws} networks and none fell in the MACs window "
                    f"[{(1 - self.window) * target:.3f}, {target}]; widen the window or the "
                    "keep range"
                )
            ratios = rng.uniform(task.config.min_keep, task.config.max_keep, size=len(full))
            channels = np.array(
                [
                    snap_count(o, r * c)
                    for o, r, c in zip(task.candidates, ratios, full, strict=True)
                ],
                dtype=np.int64,
            )
            if low <= task.cost_model.macs(channels) <= high:
                yield channels


RANDOM = RandomSearch(
    "random", "random keep-ratios through the env's budget clipping, best of N episodes"
)
EAGLEEYE = EagleEyeSearch(
    "eagleeye",
    "EagleEye random sampling: draws outside the MACs window discarded for free, best of N",
)


def search_random(task: PruningTask, target: float, evals: int, seed: int) -> SearchResult:
    """The ``random`` method's search (:class:`RandomSearch`)."""
    return RANDOM.search(task, target, evals, seed)


def search_eagleeye(
    task: PruningTask,
    target: float,
    evals: int,
    seed: int,
    *,
    window: float = EAGLEEYE_WINDOW,
    max_draws: int = 1_000_000,
) -> SearchResult:
    """The ``eagleeye`` method's search (:class:`EagleEyeSearch`) with this ``window``."""
    method = dataclasses.replace(EAGLEEYE, window=window, max_draws=max_draws)
    return method.search(task, target, evals, seed)
