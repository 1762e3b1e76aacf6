"""One policy for many networks: train across a family of environments and targets.

:func:`train_family` trains one agent on several env presets at once. Every episode draws a
member network and a MACs target (from a grid, e.g. 0.30, 0.35, ..., 0.70), so one policy
learns corrections that hold across architectures and budgets. The reward of an episode is
its accuracy minus the accuracy of the prior allocation on the same network at the same
target (evaluated once per member and target, then cached): a network's own accuracy level
cancels out, and the policy is rewarded only for beating what it starts from.

A run checkpoints itself at update boundaries (every ``save_every`` episodes, on
Ctrl-C/SIGTERM and at the end, with :mod:`rlprune.rl.checkpoint`), and
:func:`resume_family` continues a killed run exactly where that checkpoint left it.

The saved policy's metadata names the family, the targets, the command, the software
versions, and the range every observation feature took in training;
:func:`family_distance` compares a new network's observations with those ranges, so
``rlprune apply`` can say when a network lies outside what the policy has seen.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from ..env.pruning_env import PruningEnv
from ..env.rollout import at_strength, check_trust, propose, rollout
from ..errors import ConfigError, RunError
from ..evaluation.candidates import Candidate
from ..evaluation.task import PruningTask
from ..files import atomic_write_json, atomic_write_text
from ..mdp.features import action_space, features_for, observation_space
from ..mdp.settings import EnvConfig, make_config
from ..presets.tasks import (
    check_recorded_dataset,
    check_recorded_model,
    dataset_fingerprint,
    load_task,
    model_fingerprint,
)
from ..reports.versions import software_versions
from .agents import ON_POLICY, AgentConfig, build_algorithm, make_agent_config
from .checkpoint import (
    Snapshot,
    capture,
    latest_checkpoint,
    read_checkpoint,
    restore,
    write_checkpoint,
)
from .policy import POLICY_ENV_KEYS, LoadedPolicy, env_config_for_policy, save_policy
from .training import _clear_run_files, _logged_episodes, _sigterm_stops_like_ctrl_c, _truncate_log

__all__ = [
    "ZeroShot",
    "policy_env",
    "DEFAULT_TARGETS",
    "FamilyEnv",
    "FamilyResult",
    "FamilySettings",
    "family_distance",
    "resume_family",
    "target_grid",
    "train_family",
    "zero_shot",
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


_LOG_FIELDS = (
    "episode",
    "member",
    "target",
    "accuracy",
    "macs_ratio",
    "reward",
    "prior_reward",
    "time/elapsed_s",
)


class _FamilyCallback(BaseCallback):
    """Logs finished episodes, tracks observation ranges, checkpoints the run (and saves
    the policy) at update boundaries, and stops after N episodes."""

    def __init__(
        self,
        total: int,
        run_dir: Path,
        save: Callable[[], None],
        save_every: int,
        on_episode: Callable[[int, dict[str, Any]], None] | None,
        n_features: int,
        vec_env: DummyVecEnv,
        snapshot: Snapshot | None = None,
    ) -> None:
        super().__init__()
        self.total = total
        self.vec_env = vec_env
        self.run_dir = run_dir
        self.save = save
        self.save_every = save_every
        self.on_episode = on_episode
        self.low = np.full(n_features, np.inf)
        self.high = np.full(n_features, -np.inf)
        self.episodes = 0
        self.elapsed_before = 0.0
        log = run_dir / "episodes.csv"
        if snapshot is None:
            self.rows: list[dict[str, Any]] = []
            self._handle = log.open("w", newline="")
            self._writer = csv.DictWriter(self._handle, fieldnames=_LOG_FIELDS)
            self._writer.writeheader()
        else:  # the episodes the checkpoint covers; later ones run again, identically
            self.episodes = snapshot.episodes
            self.elapsed_before = float(snapshot.state.get("elapsed_s", 0.0))
            saved = snapshot.state.get("family_ranges") or {}
            self.low = np.array([np.inf if v is None else v for v in saved["low"]])
            self.high = np.array([-np.inf if v is None else v for v in saved["high"]])
            _truncate_log(log, self.episodes, _LOG_FIELDS)
            with log.open(newline="") as handle:
                self.rows = [
                    {**row, "reward": float(row["reward"])}
                    for row in list(csv.DictReader(handle))[: self.episodes]
                ]
            self._handle = log.open("a", newline="")
            self._writer = csv.DictWriter(self._handle, fieldnames=_LOG_FIELDS)
        self.start = time.perf_counter()
        self.snapshot: Snapshot | None = None
        """The run at the latest update boundary."""
        self.written = self.episodes
        """Episodes the last checkpoint written (or resumed from) covers."""

    def elapsed(self) -> float:
        """Seconds the run has taken, over all its sessions."""
        return self.elapsed_before + time.perf_counter() - self.start

    def _on_rollout_start(self) -> None:
        self.snapshot = capture(
            self.model, self.vec_env, episodes=self.episodes, elapsed_s=self.elapsed(), best=None
        )
        self.snapshot.state["family_ranges"] = {
            "low": [None if not np.isfinite(v) else float(v) for v in self.low],
            "high": [None if not np.isfinite(v) else float(v) for v in self.high],
        }
        every = self.save_every
        if every and self.episodes // every > self.written // every:
            self.checkpoint("episodes")

    def checkpoint(self, reason: str) -> None:
        """Write the latest snapshot as a checkpoint, and the policy as it was then."""
        if self.snapshot is None or self.snapshot.episodes <= self.written:
            return
        write_checkpoint(self.snapshot, self.run_dir / "checkpoints", reason=reason)
        self.written = self.snapshot.episodes
        self.save()

    def observe(self, obs: np.ndarray) -> None:
        """Widen the observed feature ranges by ``obs`` (one row per env)."""
        rows = np.asarray(obs, dtype=np.float64).reshape(-1, len(self.low))
        self.low = np.minimum(self.low, rows.min(axis=0))
        self.high = np.maximum(self.high, rows.max(axis=0))

    def _on_step(self) -> bool:
        if self.episodes >= self.total:
            return False
        dones = self.locals["dones"]
        obs = np.asarray(self.locals["new_obs"])
        # the observation after a finished episode is the next episode's first
        self.observe(obs)
        for reward, done, info in zip(
            self.locals["rewards"], dones, self.locals["infos"], strict=True
        ):
            if not done or "accuracy" not in info:
                continue
            self.episodes += 1
            row = {
                "episode": self.episodes,
                "member": info["member"],
                "target": round(float(info["target"]), 6),
                "accuracy": float(info["accuracy"]),
                "macs_ratio": float(info["macs_ratio"]),
                "reward": float(info.get("reward", reward)),  # without shaping
                "prior_reward": float(info["prior_reward"]),
                "time/elapsed_s": round(self.elapsed(), 3),
            }
            self.rows.append(row)
            self._writer.writerow(row)
            self._handle.flush()
            self.logger.record_mean("episode/reward_over_prior", row["reward"])
            if self.on_episode is not None:
                self.on_episode(self.episodes, row)
        return self.episodes < self.total

    def close(self) -> None:
        """Close the episode log."""
        self._handle.close()


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
    if settings.episodes < 1 or settings.n_envs < 1:
        raise RunError("--episodes and --n-envs must be at least 1")
    if settings.n_envs > 1 and agent.algo not in ON_POLICY:
        raise RunError(
            f"--n-envs {settings.n_envs}: {agent.algo.upper()} learns from one environment; "
            "drop --n-envs (or train PPO)"
        )
    start = time.perf_counter()
    members = _member_configs(configs, agent, settings.targets)
    if tasks is None:
        tasks = [load_task(c) for c in members]
    for task in tasks:
        task.check_target(min(settings.targets))
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [c.name for c in members]
    snapshot: Snapshot | None = None
    if _resume:
        checkpoint = latest_checkpoint(run_dir)
        # no checkpoint yet (killed before the first): the run starts again
        snapshot = read_checkpoint(checkpoint) if checkpoint is not None else None
    else:
        atomic_write_json(
            run_dir / "family.json",
            {
                "family": names,
                "targets": list(settings.targets),
                "agent": agent.to_dict(),
                "train": dataclasses.asdict(settings),
                "command": command,
                "members": [json.loads(json.dumps(c.to_dict(), default=list)) for c in configs],
                "model_sha256": [model_fingerprint(c.task) for c in configs],
                # a resume imports a member's dataset code only if its file is unchanged
                "dataset_sha256": [dataset_fingerprint(c.task) for c in configs],
            },
        )
        atomic_write_text(run_dir / "command.txt", command + "\n")
        atomic_write_json(run_dir / "versions.json", software_versions())
        _clear_run_files(run_dir)

    def family_env() -> Monitor:
        envs = [PruningEnv(task=t, config=c) for t, c in zip(tasks, members, strict=True)]
        return Monitor(FamilyEnv(envs, settings.targets))

    vec_env = DummyVecEnv([family_env] * settings.n_envs)
    n_units = int(np.median([len(t.analysis.units) for t in tasks]))
    algorithm = build_algorithm(agent, vec_env, n_units, seed=settings.seed)
    logs = run_dir / "sb3"
    if snapshot is not None:
        logs = logs / f"resume-ep{snapshot.episodes:06d}"  # keep the earlier sessions' logs
    algorithm.set_logger(configure(str(logs), ["csv"]))
    if snapshot is not None:
        restore(snapshot, algorithm, vec_env)  # the generators last: nothing draws after it
    evaluations_before = sum(t.timings.evaluations for t in tasks)
    version = members[0].env.features
    names_of_features = features_for(version)

    def save() -> None:
        ranges = {
            name: [round(float(lo), 6), round(float(hi), 6)]
            for name, lo, hi in zip(names_of_features, callback.low, callback.high, strict=True)
            if np.isfinite(lo)
        }
        save_policy(
            algorithm.policy,
            run_dir / "policy",
            {
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
                "training_episodes": callback.episodes,
                "command": command,
                "versions": software_versions(),
                "feature_ranges": ranges,
                "best": None,
            },
            feature_version=version,
        )

    callback = _FamilyCallback(
        settings.episodes,
        run_dir,
        save,
        settings.save_every,
        on_episode,
        len(names_of_features),
        vec_env,
        snapshot,
    )
    stop_signal = 0
    # far more steps than needed (the callback stops at N episodes); the same total for a
    # resumed run as for an uninterrupted one
    total_steps = (
        (settings.episodes + settings.n_envs) * max(len(t.analysis.units) for t in tasks) * 10
    )
    try:
        with _sigterm_stops_like_ctrl_c():
            if callback.episodes < settings.episodes:
                algorithm.learn(
                    total_timesteps=total_steps - algorithm.num_timesteps,
                    callback=callback,
                    reset_num_timesteps=snapshot is None,
                )
    except KeyboardInterrupt as interrupt:
        stop_signal = int(getattr(interrupt, "signum", signal.SIGINT))
    finally:
        callback.close()
    callback.checkpoint("interrupt" if stop_signal else "end")
    save()
    improvement: dict[str, float] = {}
    for name in names:
        rewards = [r["reward"] for r in callback.rows if r["member"] == name]
        if rewards:
            tail = rewards[-max(1, len(rewards) // 4) :]
            improvement[name] = float(np.mean(tail))
    return FamilyResult(
        run_dir=run_dir,
        episodes=callback.episodes,
        evaluations=sum(t.timings.evaluations for t in tasks) - evaluations_before,
        seconds=time.perf_counter() - start,
        interrupted=bool(stop_signal),
        stop_signal=stop_signal,
        improvement=improvement,
    )


def resume_family(
    run_dir: str | Path,
    *,
    episodes: int | None = None,
    on_episode: Callable[[int, dict[str, Any]], None] | None = None,
    trust_dataset: str | None = None,
) -> FamilyResult:
    """Continue a family run (:func:`train_family`) from its last checkpoint, up to its
    episode count (or ``episodes``, recorded in ``family.json``). Without a checkpoint (killed
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
    for config, recorded in zip(members, meta.get("model_sha256") or [], strict=False):
        check_recorded_model(config.task, recorded, f"family run {path}")
    datasets = {c.task.dataset for c in members}
    if trust_dataset is not None and trust_dataset not in datasets:
        raise RunError(
            f"--dataset {trust_dataset} conflicts with the family run in {path} (its members "
            f"use {', '.join(sorted(datasets))}); a resumed run keeps its data: drop --dataset"
        )
    recorded_data = list(meta.get("dataset_sha256") or []) + [None] * len(members)
    for config, recorded in zip(members, recorded_data, strict=False):
        if config.task.dataset != trust_dataset:  # dataset code runs only unchanged, or trusted
            check_recorded_dataset(config.task, recorded, f"family run {path}")
    done = _logged_episodes(path / "episodes.csv")
    if episodes is not None and episodes != settings.episodes:
        if episodes < done:
            raise RunError(
                f"--episodes {episodes} is fewer than the {done} episodes {path} has done; a "
                f"resumed run only continues: give --episodes {done} or more, or drop --episodes"
            )
        settings = dataclasses.replace(settings, episodes=episodes)
        meta["train"] = dataclasses.asdict(settings)
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


def family_distance(
    metadata: dict[str, Any], observations: np.ndarray, tolerance: float = 0.02
) -> list[tuple[str, int, float]]:
    """How a network's observations fall outside the ranges a policy saw in training.

    ``observations`` holds one row per step (feature set of the policy). Returns, for every
    feature with a value more than ``tolerance`` outside its training range, ``(feature,
    steps outside, largest distance outside)``, largest first; empty for a policy without
    recorded ranges or a network inside them.
    """
    ranges = metadata.get("feature_ranges") or {}
    names = features_for(int(metadata.get("feature_version", 1)))
    rows = np.asarray(observations, dtype=np.float64).reshape(-1, len(names))
    out: list[tuple[str, int, float]] = []
    for j, name in enumerate(names):
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        below = lo - rows[:, j]
        above = rows[:, j] - hi
        distance = np.maximum(below, above)
        outside = distance > tolerance
        if outside.any():
            out.append((name, int(outside.sum()), float(distance.max())))
    out.sort(key=lambda item: -item[2])
    return out


@dataclass(frozen=True)
class ZeroShot:
    """One zero-shot episode of a policy on a network."""

    candidate: Candidate
    """The evaluated configuration."""
    outside: list[tuple[str, int, float]]
    """:func:`family_distance` of the network's observations under the policy."""
    deferred: bool
    """Whether the policy's corrections were damped (to :attr:`scale`; 0, the prior alone)
    because the network lies outside its training ranges."""
    scale: float = 1.0
    """The strength at which the corrections were played (1: in full)."""


def policy_env(policy: LoadedPolicy, task: PruningTask, target: float) -> PruningEnv:
    """The env on which ``policy`` plays ``task``'s network at ``target``: the task's settings
    with the policy's own env keys (action mode, prior, features, ...)."""
    return PruningEnv(
        task=task, config=env_config_for_policy(EnvConfig(task.config), policy, target)
    )


def zero_shot(
    policy: LoadedPolicy, env: PruningEnv, seed: int = 0, trust: str = "family"
) -> ZeroShot:
    """Run ``policy`` once on ``env``'s network; evaluate one configuration.

    A dry pass (nothing evaluated) collects the observations the policy would see and
    compares them with its training ranges (:func:`family_distance`). With ``trust="family"``
    a residual policy whose network lies outside them plays its corrections damped to its
    :attr:`~rlprune.rl.policy.LoadedPolicy.outside_scale` (0 by default: its prior, action
    0 at every unit): the corrections it learned are not trusted in full where it has seen
    nothing like the network. Policies without recorded ranges, and absolute-action
    policies (whose action 0 is no prior), always play as trained.
    """
    check_trust(trust)
    observations: list[np.ndarray] = []
    propose(policy, env, seed=seed, observations=observations)
    outside = family_distance(policy.metadata, np.array(observations))
    deferred = trust == "family" and bool(outside) and env.config.env.action_mode == "residual"
    scale = policy.outside_scale if deferred else 1.0
    candidate = rollout(at_strength(policy, scale), env, seed=seed)
    return ZeroShot(candidate, outside, deferred, scale)
