"""What a search method is, and the prologue and epilogue every method shares.

A search method (:class:`SearchMethod`) has a name, a one-line description that says
what it costs, the fewest evaluations it needs (:meth:`SearchMethod.min_evals`) and
``search(task, target, evals, seed, options) -> SearchResult``. ``search`` is written
once, here: it checks the request (a reachable target, enough evaluations, the options
the method reads), lets the method spend its :class:`Budget` (:meth:`SearchMethod.spend`,
the only part a method writes), and reads the result from the task's ledger: every
candidate the method requested, its charge, and its best full-fidelity candidate within
the target (:meth:`~rlprune.evaluation.task.PruningTask.search_result`).

A baseline (:class:`BaselineMethod`) searches the task directly, with no agent to train
and no policy to apply. It plays its configurations through :func:`baseline_env` (a
:class:`FixedRatioPolicy` speaks the same ``predict()`` as an agent), so the env applies
the same rounding and budget clipping as for a learned policy and one evaluation loop
(:func:`rlprune.env.rollout.rollout`) serves every method.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..env.pruning_env import PruningEnv
from ..env.rollout import rollout
from ..errors import ConfigError
from ..evaluation.candidates import Candidate, SearchResult
from ..evaluation.task import PruningTask
from ..mdp.features import keep_to_action
from ..mdp.settings import EnvConfig
from ..pruning.macs import ChannelCounts

__all__ = [
    "BaselineMethod",
    "Budget",
    "FixedRatioPolicy",
    "SearchMethod",
    "SearchOptions",
    "baseline_env",
    "fixed_policy",
    "play",
    "score_batch",
]


@dataclass(frozen=True)
class SearchOptions:
    """What a method may read beyond the task, target, budget and seed: the settings one
    benchmark gives every method (most methods read none of them)."""

    config: EnvConfig | None = None
    """The preset the task was loaded for: the env settings agents train under (default:
    the task's configuration with default env settings, at the target asked)."""
    runs: Path = Path("runs")
    """Where a method that trains keeps one run folder per (method, seed)."""
    policy: str | None = None
    """A policy trained elsewhere, for the transfer methods."""
    adapt_episodes: int = 0
    """Extra episodes for ``transfer-adapt``, extra evaluations for ``transfer-refine``."""
    trust: str = "family"
    """How the transfer methods' zero-shot episode trusts the policy (``rlprune apply
    --trust``)."""


@dataclass(frozen=True)
class Budget:
    """A search's allowance: ``evals`` full evaluations charged to ``task`` from ledger
    index ``since`` on."""

    task: PruningTask
    evals: float
    since: int

    @property
    def charged(self) -> float:
        """Full evaluations charged so far."""
        return self.task.charged(self.since)

    def batch(self, fidelity: float = 1.0) -> int:
        """How many candidates of ``fidelity`` full evaluations each to propose next: one
        per worker, as many as the budget still allows."""
        room = int(np.floor((self.evals - self.charged) / fidelity + 1e-9))
        return max(0, min(room, self.task.service.workers))


@dataclass(frozen=True)
class SearchMethod(ABC):
    """A search method compared with the others at equal cost."""

    name: str
    description: str
    """One line for the ``--methods`` help: what the method does and what it costs."""
    seeded: bool = field(default=True, kw_only=True)
    """False for deterministic methods: every seed gives the same result, so the benchmark
    searches once and repeats it."""

    def min_evals(self, task: PruningTask) -> int:
        """The fewest full evaluations the method needs on ``task``."""
        return 1

    def min_evals_reason(self, task: PruningTask) -> str:
        """Why :meth:`min_evals` is what it is, for the error message ("" when plain)."""
        return ""

    def check_options(self, options: SearchOptions, evals: int) -> None:
        """Raise :class:`ConfigError` for options this method cannot run with (by default
        a method reads none)."""
        return None

    def check(self, task: PruningTask, target: float, evals: int, options: SearchOptions) -> None:
        """Raise for an unreachable target, fewer than :meth:`min_evals` evaluations, or
        options the method cannot run with."""
        task.check_target(target)
        needed = self.min_evals(task)
        if evals < needed:
            noun = "evaluation" if needed == 1 else "evaluations"
            raise ConfigError(
                f"method {self.name!r} needs at least {needed} {noun}"
                f"{self.min_evals_reason(task)}, got {evals}; raise --evals"
            )
        self.check_options(options, evals)

    def search(
        self,
        task: PruningTask,
        target: float,
        evals: int,
        seed: int,
        options: SearchOptions | None = None,
    ) -> SearchResult:
        """Spend at most ``evals`` full evaluations on ``task``; the best candidate within
        ``target`` and every candidate requested, as :class:`SearchResult`.

        Raises:
            ConfigError: the request or the options do not suit the method.
            BudgetError: the target is unreachable.
        """
        started = time.perf_counter()
        options = SearchOptions() if options is None else options
        self.check(task, target, evals, options)
        budget = Budget(task, evals, len(task.ledger))
        self.spend(task, target, budget, seed, options)
        return task.search_result(self.name, budget.since, target, started)

    @abstractmethod
    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Request candidates from ``task`` (:meth:`PruningTask.evaluate`), charging at
        most ``budget``; they land in the task's ledger, where :meth:`search` reads them."""


@dataclass(frozen=True)
class BaselineMethod(SearchMethod):
    """A baseline: a method that searches the task directly, with no agent to train and no
    policy to apply, playing its configurations through :func:`baseline_env`."""


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


def baseline_env(task: PruningTask, target: float, *, fill_budget: bool = True) -> PruningEnv:
    """The env a baseline plays through: the task's action bounds and budget clipping, with
    feature set 1 and absolute actions whatever the task's config says (a baseline reads
    no observation, so it must not pay for the probes of feature set 2 or a prior)."""
    config = EnvConfig(task.config).derive(
        {"target": target, "fill_budget": fill_budget, "features": 1, "action_mode": "absolute"}
    )
    return PruningEnv(task=task, config=config)


def fixed_policy(task: PruningTask, env: PruningEnv, channels: ChannelCounts) -> FixedRatioPolicy:
    """The :class:`FixedRatioPolicy` that plays ``channels`` on ``env``."""
    keep = [int(n) / u.out_channels for n, u in zip(channels, task.analysis.units, strict=True)]
    return FixedRatioPolicy(keep, env, env.config.task.min_keep, env.config.task.max_keep)


def play(task: PruningTask, channels: ChannelCounts, target: float) -> Candidate:
    """Evaluate a fixed configuration the way agents are evaluated: a
    :class:`FixedRatioPolicy` plays it through the env with ``predict()``.

    ``fill_budget`` is off so the env keeps the configuration as given (it already
    meets the target, so the upper bound never binds)."""
    env = baseline_env(task, target, fill_budget=False)
    return rollout(fixed_policy(task, env, channels), env)


def score_batch(
    task: PruningTask, batch: Sequence[ChannelCounts], val_images: int | None = None
) -> list[Candidate]:
    """Score ``batch`` in parallel (:meth:`PruningTask.prefetch`), then request each in
    order: the ledger is what sequential requests would have made it. ``val_images``
    scores on that many validation images (a screening evaluation; default all)."""
    task.prefetch(batch, val_images)
    return [task.evaluate(channels, val_images) for channels in batch]
