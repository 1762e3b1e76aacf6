"""Transfer as search methods: a policy trained elsewhere (``options.policy``) on this network.

- ``transfer``: the policy's zero-shot episode (its probes + 1 evaluation);
- ``transfer-adapt``: then ``options.adapt_episodes`` training episodes from its weights;
- ``transfer-refine``: then :func:`~rlprune.search.optuna_search.refine`, a TPE search of
  ``options.adapt_episodes`` evaluations near the zero-shot configuration;
- ``transfer-apply``: what ``rlprune apply`` delivers by default: the zero-shot episode, the
  uniform allocation and the policy's prior, the best of them;
- ``transfer-apply-refine``: what ``rlprune apply --refine N`` delivers: that best refined
  by ``options.adapt_episodes`` evaluations.

The policy plays the task at the target asked, with its own env keys (action mode, prior,
features, ...), as ``rlprune apply`` does. Policy and training code is
imported when a transfer method runs: the registry stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..evaluation.task import PruningTask
from .agents import train_job
from .base import Budget, SearchMethod, SearchOptions
from .optuna_search import refine

if TYPE_CHECKING:
    from ..env.pruning_env import PruningEnv
    from ..rl.policy import LoadedPolicy
    from ..rl.transfer import ZeroShot

__all__ = [
    "TRANSFER",
    "TRANSFER_ADAPT",
    "TRANSFER_APPLY",
    "TRANSFER_APPLY_REFINE",
    "TRANSFER_REFINE",
    "AdaptedTransfer",
    "AppliedRefine",
    "AppliedTransfer",
    "RefinedTransfer",
    "TransferMethod",
]


@dataclass(frozen=True)
class TransferMethod(SearchMethod):
    """The zero-shot episode of ``options.policy`` on the task
    (:func:`~rlprune.rl.transfer.zero_shot`, as ``rlprune apply --trust`` plays it)."""

    def check_options(self, options: SearchOptions, evals: int) -> None:
        """A policy is needed."""
        if options.policy is None:
            raise ConfigError("the transfer methods need --policy PATH (a trained policy)")

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Play the policy zero-shot, then :meth:`follow_up`."""
        from ..rl.policy import load_policy
        from ..rl.transfer import policy_env, zero_shot

        assert options.policy is not None  # check_options
        policy = load_policy(options.policy)
        env = policy_env(policy, task, target)
        shot = zero_shot(policy, env, seed=seed, trust=options.trust)
        self.follow_up(task, target, seed, options, policy, env, shot)

    def follow_up(
        self,
        task: PruningTask,
        target: float,
        seed: int,
        options: SearchOptions,
        policy: LoadedPolicy,
        env: PruningEnv,
        shot: ZeroShot,
    ) -> None:
        """What the method spends after the zero-shot episode: nothing."""


@dataclass(frozen=True)
class _Extended(TransferMethod):
    """A transfer method that spends ``options.adapt_episodes`` more evaluations."""

    def check_options(self, options: SearchOptions, evals: int) -> None:
        """A policy, and ``0 < adapt_episodes < evals``."""
        super().check_options(options, evals)
        if not 0 < options.adapt_episodes < evals:
            raise ConfigError(
                f"{self.name} needs 0 < --adapt-episodes < --evals ({evals}), "
                f"got {options.adapt_episodes}"
            )


@dataclass(frozen=True)
class AdaptedTransfer(_Extended):
    """The zero-shot episode, then ``options.adapt_episodes`` episodes of training from the
    policy's weights on this network."""

    def follow_up(
        self,
        task: PruningTask,
        target: float,
        seed: int,
        options: SearchOptions,
        policy: LoadedPolicy,
        env: PruningEnv,
        shot: ZeroShot,
    ) -> None:
        """Train from the policy."""
        train_job(
            self.name,
            seed,
            env.config,
            policy.agent,
            options.adapt_episodes,
            task,
            options.runs,
            initial_policy=policy,
        )


@dataclass(frozen=True)
class RefinedTransfer(_Extended):
    """The zero-shot episode, then :func:`~rlprune.search.optuna_search.refine` of
    ``options.adapt_episodes`` evaluations near its configuration."""

    def follow_up(
        self,
        task: PruningTask,
        target: float,
        seed: int,
        options: SearchOptions,
        policy: LoadedPolicy,
        env: PruningEnv,
        shot: ZeroShot,
    ) -> None:
        """Refine the zero-shot configuration."""
        refine(task, target, shot.candidate, options.adapt_episodes, seed)


@dataclass(frozen=True)
class AppliedTransfer(TransferMethod):
    """What ``rlprune apply`` delivers without ``--refine``: the zero-shot episode, then the
    uniform allocation and the policy's prior (one evaluation each), the best of them
    (:func:`~rlprune.rl.transfer.best_of_obvious`)."""

    def follow_up(
        self,
        task: PruningTask,
        target: float,
        seed: int,
        options: SearchOptions,
        policy: LoadedPolicy,
        env: PruningEnv,
        shot: ZeroShot,
    ) -> None:
        """Score the obvious allocations beside the policy's."""
        from ..rl.transfer import best_of_obvious

        best_of_obvious(task, env.config, shot.candidate)


@dataclass(frozen=True)
class AppliedRefine(_Extended):
    """What ``rlprune apply --refine N`` delivers: :class:`AppliedTransfer`'s best, refined
    by ``options.adapt_episodes`` evaluations around it."""

    def follow_up(
        self,
        task: PruningTask,
        target: float,
        seed: int,
        options: SearchOptions,
        policy: LoadedPolicy,
        env: PruningEnv,
        shot: ZeroShot,
    ) -> None:
        """Score the obvious allocations, then refine the best."""
        from ..rl.transfer import best_of_obvious

        best, _, _ = best_of_obvious(task, env.config, shot.candidate)
        refine(task, target, best, options.adapt_episodes, seed)


TRANSFER = TransferMethod(
    "transfer", "a policy trained elsewhere (--policy), zero-shot (1 evaluation)"
)
TRANSFER_ADAPT = AdaptedTransfer(
    "transfer-adapt",
    "the --policy adapted for --adapt-episodes on this model (1 + episodes evaluations)",
)
TRANSFER_REFINE = RefinedTransfer(
    "transfer-refine",
    "the --policy's zero-shot configuration refined by a TPE search of --adapt-episodes "
    "evaluations within 0.25 keep-ratio of it, three quarters screening on a quarter of "
    "the validation set, the best screened then scored in full (1 + that many evaluations)",
)
TRANSFER_APPLY = AppliedTransfer(
    "transfer-apply",
    "what rlprune apply delivers: the --policy's zero-shot configuration, the uniform "
    "allocation and its prior, the best of them (up to 3 evaluations)",
)
TRANSFER_APPLY_REFINE = AppliedRefine(
    "transfer-apply-refine",
    "what rlprune apply --refine N delivers: transfer-apply's best refined by a TPE search of "
    "--adapt-episodes evaluations around it (up to 3 + that many evaluations)",
)
