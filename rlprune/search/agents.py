"""Agents as search methods: a Stable-Baselines3 agent preset trained from scratch on the task.

Every bundled agent preset (``ppo``, ``ppo-v1``, ``ddpg``, ``td3``, ...) is a method of
the same name. Its probes and prior (feature set 2, residual actions) are charged up
front; the evaluations left are its training episodes, and its best episode is the
result. Training code is imported when an agent runs: the registry, which the CLI reads
for its help, stays light.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..env.pruning_env import PruningEnv
from ..errors import ConfigError
from ..evaluation.task import PruningTask
from ..mdp.settings import EnvConfig
from ..presets.loader import available_agents, read_preset, resolve_preset
from .base import Budget, SearchMethod, SearchOptions

if TYPE_CHECKING:
    from ..rl.agents import AgentConfig
    from ..rl.policy import LoadedPolicy

__all__ = ["AgentMethod", "agent_methods", "train_job"]


def _agent_description(name: str) -> str:
    """A bundled agent preset's one-line description: its ``description:`` key."""
    raw = read_preset("agent", resolve_preset("agent", name))
    algo = str((raw.get("default") or {}).get("algo", "ppo")).upper()
    return str(raw.get("description", f"{algo} (Stable-Baselines3) trained from scratch"))


def train_job(
    method: str,
    seed: int,
    config: EnvConfig,
    agent: AgentConfig,
    episodes: int,
    task: PruningTask,
    runs: Path,
    initial_policy: LoadedPolicy | None = None,
) -> None:
    """Train ``agent`` for a (method, seed) job on ``task``, in the run folder
    ``runs/{method}__{seed}`` emptied first (a job interrupted by a kill left its
    episodes.csv, checkpoints and logs there, and the job starts again from scratch).

    No periodic checkpoints, since an interrupted job is run again from the start (its
    evaluations must be charged). Ctrl-C inside training stops the search too."""
    from ..rl.training import TrainSettings, train

    settings = TrainSettings(episodes=episodes, seed=seed, checkpoint_every=0, checkpoint_seconds=0)
    run_dir = runs / f"{method}__{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    result = train(
        config, agent, settings, run_dir=run_dir, task=task, initial_policy=initial_policy
    )
    if result.interrupted:  # Ctrl-C inside training: stop here too
        raise KeyboardInterrupt


@dataclass(frozen=True)
class AgentMethod(SearchMethod):
    """The agent preset called :attr:`name`, trained from scratch on the task for as many
    episodes as its budget leaves after its probes, under the env settings of
    ``options.config`` (run folders in ``options.runs``)."""

    def spend(
        self, task: PruningTask, target: float, budget: Budget, seed: int, options: SearchOptions
    ) -> None:
        """Charge the probes, then train on the episodes left."""
        from ..rl.agents import load_agent_config

        config = options.config
        if config is None:
            config = EnvConfig(task.config).derive({"target": target})
        if config.env.target.low != target:
            raise ConfigError(
                f"method {self.name!r} asked for target {target} under a preset whose target is "
                f"{config.env.target.low}; pass the preset at that target"
            )
        agent = load_agent_config(self.name, config.name)
        # probes and the prior (feature set 2, residual actions) are charged once, up front
        PruningEnv(task=task, config=agent.env_config(config))
        episodes = int(budget.evals - budget.charged + 1e-9)
        if episodes < 1:
            raise ConfigError(
                f"method {self.name!r} spends {budget.charged:.1f} evaluations on its probes, "
                f"leaving no episode of --evals {budget.evals}; raise --evals"
            )
        train_job(self.name, seed, config, agent, episodes, task, options.runs)


def agent_methods() -> tuple[AgentMethod, ...]:
    """A method for every bundled agent preset, described by the preset."""
    return tuple(AgentMethod(name, _agent_description(name)) for name in available_agents())
