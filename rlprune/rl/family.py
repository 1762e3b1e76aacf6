"""One policy for many networks: train across a family of environments and targets.

:func:`train_family` trains one agent on several env presets at once. Every episode draws a
member network and a MACs target (from a grid, e.g. 0.30, 0.35, ..., 0.70), so one policy
learns corrections that hold across architectures and budgets. The reward of an episode is
its accuracy minus the accuracy of the prior allocation on the same network at the same
target (evaluated once per member and target, then cached): a network's own accuracy level
cancels out, and the policy is rewarded only for beating what it starts from.

A run is a run folder of the run base (:mod:`rlprune.rl.run`) with ``family.json`` for its
config. It checkpoints itself at update boundaries (every ``save_every`` episodes, on
Ctrl-C/SIGTERM and at the end, with :mod:`rlprune.rl.checkpoint`), and
:func:`resume_family` continues a killed run exactly where that checkpoint left it.

The saved policy's metadata names the family, the targets, the command, the software
versions, and the range every observation feature took in training;
:func:`rlprune.rl.transfer.family_distance` compares a new network's observations with
those ranges, so ``rlprune apply`` can say when a network lies outside what the policy has
seen.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from ..env.pruning_env import PruningEnv
from ..errors import ConfigError, RunError
from ..evaluation.task import PruningTask
from ..files import atomic_write_json
from ..mdp.features import action_space, features_for, observation_space
from ..mdp.settings import EnvConfig, make_config
from ..presets.tasks import (
    check_recorded_dataset,
    check_recorded_model,
    dataset_fingerprint,
    load_task,
    model_fingerprint,
    trust_task_code,
)
from ..reports.versions import software_versions
from .agents import ON_POLICY, AgentConfig, build_algorithm, make_agent_config
from .callbacks import CheckpointAtUpdates, ObservationRanges, run_callback
from .checkpoint import Snapshot, restore
from .policy import POLICY_ENV_KEYS, save_policy
from .recorder import FamilyRecorder
from .run import check_more_episodes, learn_up_to, open_run, sb3_logger, until_stopped

__all__ = [
    "DEFAULT_TARGETS",
    "FamilyEnv",
    "FamilyResult",
    "FamilySettings",
    "resume_family",
    "target_grid",
    "train_family",
]

DEFAULT_TARGETS = (0.3, 0.7)
"""The target range a family policy trains on by default."""


def target_grid(low: float, high: float, step: float = 0.05) -> tuple[float, ...]:
    """Targets from ``low`` to ``high`` in ``step`` (both ends included, rounded to 1e-6)."""
    if not 0 < low <= high <= 1:
        raise ConfigError(f"target range [{low}, {high}] must satisfy 0 < low <= high <= 1")
    n = int(round((high - low) / step))
    grid = sorted({round(low + i * step, 6) for i in range(n + 1)} | {round(high, 6)})
    return tuple(grid)


@dataclass(frozen=True)
class FamilySettings:
    """How to train across a family (what ``rlprune train --env a,b,...`` sets)."""

    episodes: int = 2000
    """Episodes in total, over all members."""
    seed: int = 0
    targets: tuple[float, ...] = target_grid(*DEFAULT_TARGETS)
    """The targets episodes draw from (uniformly)."""
    n_envs: int = 1
    save_every: int = 200
    """Checkpoint the run and save the policy (``policy/``) at the first update boundary
    after every this many episodes, so a killed run leaves both."""


@dataclass
class FamilyResult:
    """What a family training run produced."""

    run_dir: Path
    episodes: int
    evaluations: int
    seconds: float
    interrupted: bool
    stop_signal: int = 0
    improvement: dict[str, float] = field(default_factory=dict)
    """Per member: the mean reward (accuracy over the prior's) of the last quarter of its
    episodes."""


class FamilyEnv(gym.Env[np.ndarray, np.ndarray]):
    """Each episode, one member env (drawn uniformly) at one target (drawn from ``targets``).

    ``reset(options={"member": m, "target": t})`` fixes either (``m``: the member's index or
    name). The reward at the last step is the member env's reward minus the reward its
    prior allocation scores at that target (every unit at action 0; evaluated once, then
    cached by the task). ``info`` carries ``member`` (the env's name), ``prior_reward`` and
    ``reward`` (the episode's reward over the prior's, without shaping).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, envs: Sequence[PruningEnv], targets: Sequence[float]) -> None:
        if not envs:
            raise ConfigError("a family needs at least one env")
        if not targets:
            raise ConfigError("a family needs at least one target")
        versions = {env.config.env.features for env in envs}
        if len(versions) != 1:
            raise ConfigError(
                "family members observe different feature sets "
                f"({sorted(versions)}); give them the same agent preset"
            )
        self.envs = list(envs)
        self.targets = tuple(float(t) for t in targets)
        self.names = [env.config.name for env in envs]
        self.observation_space = observation_space(envs[0].config.env.features)
        self.action_space = action_space()
        self._member = 0
        self._baselines: dict[tuple[int, float], float] = {}

    @property
    def member(self) -> PruningEnv:
        """The env of the current episode."""
        return self.envs[self._member]

    def prior_reward(self, member: int, target: float) -> float:
        """The reward of the prior allocation on ``member`` at ``target`` (cached)."""
        key = (member, target)
        if key not in self._baselines:
            env = self.envs[member]
            env.reset(options={"target": target})
            zero = np.zeros(1, dtype=np.float32)
            while True:
                _, _, done, _, info = env.step(zero)
                if done:
                    break
            self._baselines[key] = float(info["reward"])  # without shaping
        return self._baselines[key]

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a member and a target (or take them from ``options``) and start its episode."""
        super().reset(seed=seed)
        options = options or {}
        member = options.get("member")
        if isinstance(member, str):
            member = self.names.index(member)
        self._member = (
            int(self.np_random.integers(len(self.envs))) if member is None else int(member)
        )
        target = options.get("target")
        target = float(self.np_random.choice(self.targets)) if target is None else float(target)
        self._prior = self.prior_reward(self._member, target)
        obs, info = self.member.reset(options={"target": target})
        return obs, {**info, "member": self.names[self._member]}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the member env; the last step's reward is relative to the prior's."""
        obs, reward, done, truncated, info = self.member.step(action)
        if done:
            info = {
                **info,
                "member": self.names[self._member],
                "prior_reward": self._prior,
                "reward": float(info["reward"]) - self._prior,
            }
            reward = float(reward) - self._prior
        return obs, reward, done, truncated, info


def _member_configs(
    configs: Sequence[EnvConfig], agent: AgentConfig, targets: Sequence[float]
) -> list[EnvConfig]:
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ConfigError(f"family lists an env twice ({', '.join(names)}); name each once")
    return [agent.env_config(c).derive({"target": (min(targets), max(targets))}) for c in configs]


def train_family(
    configs: Sequence[EnvConfig],
    agent: AgentConfig,
    settings: FamilySettings,
    run_dir: Path,
    *,
    command: str = "",
    tasks: Sequence[PruningTask] | None = None,
    on_episode: Callable[[int, dict[str, Any]], None] | None = None,
    _resume: bool = False,
) -> FamilyResult:
    """Train ``agent`` across ``configs`` (one member network each) for ``settings.episodes``.

    Writes ``run_dir/config.yaml``-like ``family.json``, ``episodes.csv``, ``checkpoints/``
    and ``policy/`` (both at the first update boundary after every ``settings.save_every``
    episodes, on Ctrl-C / SIGTERM, and at the end). :func:`resume_family` continues it.

    Raises:
        RunError: bad settings (episodes < 1, an off-policy agent with several envs).
        ConfigError: a member cannot be loaded, or a target is out of a member's reach.
    """
    _check_settings(agent, settings)
    start = time.perf_counter()
    members = _member_configs(configs, agent, settings.targets)
    if tasks is None:
        tasks = [load_task(c) for c in members]
    for task in tasks:
        task.check_target(min(settings.targets))
    if not _resume:  # the user named this code to train: a resume may import it
        for config in configs:
            trust_task_code(config.task)
    snapshot = open_run(
        run_dir,
        command,
        lambda: _write_family_json(run_dir, configs, members, agent, settings, command),
        resume=_resume,
    )
    vec_env = DummyVecEnv(
        [partial(_family_env, tasks, members, settings.targets)] * settings.n_envs
    )
    n_units = int(np.median([len(t.analysis.units) for t in tasks]))
    algorithm = build_algorithm(agent, vec_env, n_units, seed=settings.seed)
    algorithm.set_logger(sb3_logger(run_dir, snapshot, ["csv"]))
    ranges = ObservationRanges(features_for(members[0].env.features))
    recorder = _open_recorder(run_dir, algorithm, vec_env, ranges, snapshot)
    save = partial(
        _save_policy, algorithm, run_dir, agent, members, settings, command, ranges, recorder
    )
    checkpoints = CheckpointAtUpdates(
        run_dir,
        vec_env,
        recorder,
        every=settings.save_every,
        extra_state=lambda: {"family_ranges": ranges.to_state()},
        after_write=save,
    )
    hook = (
        (lambda: on_episode(recorder.episodes, recorder.rows[-1]))
        if on_episode is not None
        else None
    )
    callback = run_callback(
        checkpoints,
        recorder,
        settings.episodes,
        before=[ranges],  # the observation after a finished episode is the next one's first
        on_episode=hook,
        learn_last_rollout=False,
    )
    evaluations_before = sum(t.timings.evaluations for t in tasks)
    try:
        stop_signal = until_stopped(
            lambda: _run_episodes(algorithm, tasks, settings, recorder, callback, snapshot)
        )
    finally:
        recorder.close()
    checkpoints.finish("interrupt" if stop_signal else "end")
    save()
    return FamilyResult(
        run_dir=run_dir,
        episodes=recorder.episodes,
        evaluations=sum(t.timings.evaluations for t in tasks) - evaluations_before,
        seconds=time.perf_counter() - start,
        interrupted=bool(stop_signal),
        stop_signal=stop_signal,
        improvement=_improvement([c.name for c in members], recorder.rows),
    )


def _check_settings(agent: AgentConfig, settings: FamilySettings) -> None:
    """Refuse settings no family run can have.

    Raises:
        RunError: naming the flag.
    """
    if settings.episodes < 1 or settings.n_envs < 1:
        raise RunError("--episodes and --n-envs must be at least 1")
    if settings.n_envs > 1 and agent.algo not in ON_POLICY:
        raise RunError(
            f"--n-envs {settings.n_envs}: {agent.algo.upper()} learns from one environment; "
            "drop --n-envs (or train PPO)"
        )


def _write_family_json(
    run_dir: Path,
    configs: Sequence[EnvConfig],
    members: Sequence[EnvConfig],
    agent: AgentConfig,
    settings: FamilySettings,
    command: str,
) -> None:
    """A new family run's ``family.json``: everything needed to reproduce or resume it."""
    atomic_write_json(
        run_dir / "family.json",
        {
            "family": [c.name for c in members],
            "targets": list(settings.targets),
            "agent": agent.to_dict(),
            "train": dataclasses.asdict(settings),
            "threads": torch.get_num_threads(),  # this process's torch threads
            "command": command,
            "members": [json.loads(json.dumps(c.to_dict(), default=list)) for c in configs],
            "model_sha256": [model_fingerprint(c.task) for c in configs],
            # a resume imports a member's dataset code only if its file is unchanged
            "dataset_sha256": [dataset_fingerprint(c.task) for c in configs],
        },
    )


def _family_env(
    tasks: Sequence[PruningTask], members: Sequence[EnvConfig], targets: Sequence[float]
) -> Monitor:
    """One environment of a family run (``DummyVecEnv`` builds one per ``n_envs``)."""
    envs = [PruningEnv(task=t, config=c) for t, c in zip(tasks, members, strict=True)]
    return Monitor(FamilyEnv(envs, targets))


def _open_recorder(
    run_dir: Path,
    algorithm: BaseAlgorithm,
    vec_env: DummyVecEnv,
    ranges: ObservationRanges,
    snapshot: Snapshot | None,
) -> FamilyRecorder:
    """The run's recorder, afresh or (``snapshot`` restored into ``algorithm``, ``vec_env``
    and ``ranges`` first) where the checkpoint left it: its log rows and clock."""
    if snapshot is None:
        return FamilyRecorder(run_dir)
    restore(snapshot, algorithm, vec_env)  # the generators last: nothing draws after it
    ranges.load_state(snapshot.state.get("family_ranges") or {})
    elapsed = float(snapshot.state.get("elapsed_s", 0.0))
    return FamilyRecorder(run_dir, start_episode=snapshot.episodes, elapsed_s=elapsed)


def _run_episodes(
    algorithm: BaseAlgorithm,
    tasks: Sequence[PruningTask],
    settings: FamilySettings,
    recorder: FamilyRecorder,
    callback: CallbackList,
    snapshot: Snapshot | None,
) -> None:
    """Learn until the run has its episodes."""
    if recorder.episodes < settings.episodes:
        # far more steps than needed (the callback stops at N episodes); the same total for
        # a resumed run as for an uninterrupted one
        longest = max(len(t.analysis.units) for t in tasks)
        total_steps = (settings.episodes + settings.n_envs) * longest * 10
        learn_up_to(algorithm, total_steps, callback, resumed=snapshot is not None)


def _save_policy(
    algorithm: BaseAlgorithm,
    run_dir: Path,
    agent: AgentConfig,
    members: Sequence[EnvConfig],
    settings: FamilySettings,
    command: str,
    ranges: ObservationRanges,
    recorder: FamilyRecorder,
) -> None:
    """Save the policy as it is now to ``run_dir/policy``, with its family, targets, command,
    versions, episodes so far and the range every observation feature took."""
    names = [c.name for c in members]
    metadata = {
        "algo": agent.algo,
        "agent": agent.to_dict(),
        "min_keep": members[0].task.min_keep,
        "max_keep": members[0].task.max_keep,
        "reward": members[0].env.reward,
        **{key: members[0].to_dict()[key] for key in POLICY_ENV_KEYS},
        "target": [min(settings.targets), max(settings.targets)],
        "targets": list(settings.targets),
        "env": "+".join(names),
        "family": names,
        "model": None,
        "dataset": members[0].task.dataset,
        "training_episodes": recorder.episodes,
        "command": command,
        "versions": software_versions(),
        "feature_ranges": ranges.feature_ranges(),
        "best": None,
    }
    save_policy(
        algorithm.policy, run_dir / "policy", metadata, feature_version=members[0].env.features
    )


def _improvement(names: Sequence[str], rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per member: the mean reward over the prior of the last quarter of its episodes."""
    improvement: dict[str, float] = {}
    for name in names:
        rewards = [r["reward"] for r in rows if r["member"] == name]
        if rewards:
            tail = rewards[-max(1, len(rewards) // 4) :]
            improvement[name] = float(np.mean(tail))
    return improvement


def resume_family(
    run_dir: str | Path,
    *,
    episodes: int | None = None,
    on_episode: Callable[[int, dict[str, Any]], None] | None = None,
    trust_dataset: str | None = None,
    save_every: int | None = None,
) -> FamilyResult:
    """Continue a family run (:func:`train_family`) from its last checkpoint, up to its
    episode count (or ``episodes``, recorded in ``family.json``; ``save_every`` likewise). Without a checkpoint (killed
    before the first) the run starts again from the beginning; episodes logged after the
    checkpoint run again and give the same rows. A member's dataset code (a ``file.py:fn``
    dataset) is imported only if its file is the one recorded at training time, or if
    ``trust_dataset`` names it (``rlprune train --resume RUN --dataset SPEC``).

    Raises:
        RunError: the folder is not a family run, predates resumable family runs, a member's
            model code changed, ``episodes`` is fewer than the run has done, ``trust_dataset``
            is no member's dataset, or a file is damaged.
        DatasetError: a member's dataset code changed (or was not recorded) and is not
            trusted.
    """
    path = Path(run_dir)
    meta_file = path / "family.json"
    meta, members, agent, settings = _read_family_run(path)
    _check_member_code(path, meta, members, trust_dataset)
    if episodes is not None and episodes != settings.episodes:
        check_more_episodes(path, episodes)
        settings = dataclasses.replace(settings, episodes=episodes)
    if save_every is not None and save_every != settings.save_every:
        settings = dataclasses.replace(settings, save_every=save_every)
    train = json.loads(json.dumps(dataclasses.asdict(settings)))
    if meta["train"] != train:
        meta["train"] = train
        atomic_write_json(meta_file, meta)
    return train_family(
        members,
        agent,
        settings,
        path,
        command=str(meta.get("command", "")),
        on_episode=on_episode,
        _resume=True,
    )


def _read_family_run(
    path: Path,
) -> tuple[dict[str, Any], list[EnvConfig], AgentConfig, FamilySettings]:
    """A family run's ``family.json``: the record itself, its members, agent and settings.

    Raises:
        RunError: the folder is not a readable family run, or predates resumable ones.
    """
    meta_file = path / "family.json"
    try:
        meta = json.loads(meta_file.read_text())
        members = [make_config(m) for m in meta["members"]]
        raw_agent = meta["agent"]
        agent = make_agent_config(
            raw_agent["name"],
            {"algo": raw_agent["algo"], **raw_agent["hyperparams"], "env": raw_agent["env"]},
        )
        train = dict(meta["train"])
        settings = FamilySettings(**{**train, "targets": tuple(train["targets"])})
    except KeyError as exc:
        raise RunError(
            f"{meta_file} has no {exc} (a family run from before rlprune could resume them); "
            "start a new run"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise RunError(f"{path} is not a readable family run ({exc}); start a new run") from None
    return meta, members, agent, settings


def _check_member_code(
    path: Path, meta: dict[str, Any], members: Sequence[EnvConfig], trust_dataset: str | None
) -> None:
    """Model and dataset code run only if this user trusted them when training, unchanged
    since (:func:`rlprune.code.is_trusted_code`); dataset code also when named again.

    Raises:
        ModelError: a member's model code is not trusted here (missing, changed, copied).
        RunError: ``trust_dataset`` is no member's dataset.
        DatasetError: a member's dataset code is not trusted here.
    """
    recorded_models = list(meta.get("model_sha256") or []) + [None] * len(members)
    for config, recorded in zip(members, recorded_models, strict=False):  # every member
        check_recorded_model(config.task, recorded, f"family run {path}")
    datasets = {c.task.dataset for c in members}
    if trust_dataset is not None and trust_dataset not in datasets:
        raise RunError(
            f"--dataset {trust_dataset} conflicts with the family run in {path} (its members "
            f"use {', '.join(sorted(datasets))}); a resumed run keeps its data: drop --dataset"
        )
    recorded_data = list(meta.get("dataset_sha256") or []) + [None] * len(members)
    for config, recorded in zip(members, recorded_data, strict=False):
        if config.task.dataset != trust_dataset:  # dataset code runs only trusted
            check_recorded_dataset(config.task, recorded, f"family run {path}")
        else:  # named on the command line: trusted from now on
            trust_task_code(config.task, model=False)
