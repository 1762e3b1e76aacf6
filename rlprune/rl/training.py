"""Train a pruning agent: Stable-Baselines3 on :class:`~rlprune.env.pruning_env.PruningEnv`, with a run folder.

A run folder ``runs/{env}__{agent}__{seed}__{time}/`` keeps everything needed to
reproduce or continue a run::

    config.yaml        resolved env preset, agent preset and training settings
    command.txt        the exact command
    versions.json      torch / stable-baselines3 / gymnasium / torch-pruning versions
    episodes.csv       one row per episode (namespaced keys)
    best.json          best candidate so far, rewritten atomically after every episode
    checkpoints/       ep000050/ ... every ``checkpoint_every`` episodes, latest.json
    policy/            the policy artifact (rlprune.rl.policy), written at the end or on Ctrl-C
    sb3/               Stable-Baselines3 logs (CSV, TensorBoard when installed)
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from ..core.candidates import Candidate
from ..core.config import EnvConfig, make_config
from ..core.task import PruningTask
from ..env.pruning_env import PruningEnv
from ..errors import ConfigError, RunError
from ..files import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..presets.tasks import load_task
from ..reports.versions import software_versions
from .agents import AgentConfig, build_algorithm, make_agent_config
from .policy import POLICY_ENV_KEYS, LoadedPolicy, save_policy

__all__ = [
    "BestCandidate",
    "RunRecorder",
    "TrainResult",
    "TrainSettings",
    "latest_checkpoint",
    "load_run",
    "make_vec_env",
    "resume",
    "run_folder_name",
    "train",
]

CSV_FIELDS = (
    "episode",
    "episode/reward",
    "prune/accuracy",
    "prune/macs_ratio",
    "prune/params_ratio",
    "prune/target",
    "best/reward",
    "best/accuracy",
    "best/macs_ratio",
    "time/elapsed_s",
)


@dataclass(frozen=True)
class BestCandidate:
    """The best pruned network a run has evaluated (by reward)."""

    episode: int
    reward: float
    target: float
    candidate: Candidate
    units: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """``best.json``'s content: the candidate record plus episode, reward, target, units."""
        return {
            "episode": self.episode,
            "reward": self.reward,
            "target": self.target,
            "units": list(self.units),
            **self.candidate.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BestCandidate:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: a field is missing or has the wrong type.
        """
        try:
            return cls(
                episode=int(data["episode"]),
                reward=float(data["reward"]),
                target=float(data["target"]),
                candidate=Candidate.from_dict(data),
                units=tuple(str(u) for u in data["units"]),
            )
        except KeyError as exc:
            raise ConfigError(f"not a best-candidate record: missing field {exc}") from None


@dataclass(frozen=True)
class TrainSettings:
    """Training-loop settings (what the CLI flags set)."""

    episodes: int = 300
    """Episodes to run in total; each is one pruned network evaluated."""
    seed: int = 0
    n_envs: int = 1
    checkpoint_every: int = 50


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    episodes: int
    evaluations: int
    best: BestCandidate | None
    interrupted: bool
    seconds: float
    algorithm: BaseAlgorithm | None = field(default=None, repr=False)
    history: list[Candidate] = field(default_factory=list, repr=False)
    """Every candidate this session evaluated, in episode order."""


def run_folder_name(env: str, agent: str, seed: int) -> str:
    """``{env}__{agent}__{seed}__{time}``, CleanRL style."""
    return f"{env}__{agent}__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


class RunRecorder:
    """Writes a run's per-episode log, best candidate and checkpoints."""

    def __init__(
        self,
        run_dir: Path,
        task: PruningTask,
        start_episode: int = 0,
        best: BestCandidate | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.units = tuple(u.name for u in task.analysis.units)
        self.episodes = start_episode
        self.best = best
        self.task = task
        self.history: list[Candidate] = []
        """Candidates evaluated by this session's episodes, in order."""
        self.started = time.perf_counter()
        new_file = not (run_dir / "episodes.csv").exists()
        self._keep_fields = tuple(f"best/keep_ratio/{unit}" for unit in self.units)
        self._csv_handle = (run_dir / "episodes.csv").open("a", newline="")
        self._csv = csv.DictWriter(self._csv_handle, fieldnames=CSV_FIELDS + self._keep_fields)
        if new_file:
            self._csv.writeheader()

    def record(self, reward: float, info: dict[str, Any]) -> None:
        """Log one finished episode and update ``best.json``."""
        self.episodes += 1
        candidate = Candidate.from_dict(info)
        self.history.append(candidate)
        if self.best is None or reward > self.best.reward:
            self.best = BestCandidate(
                episode=self.episodes,
                reward=float(reward),
                target=float(info["target"]),
                candidate=candidate,
                units=self.units,
            )
        self._csv.writerow(
            {
                "episode": self.episodes,
                "episode/reward": f"{reward:.6f}",
                "prune/accuracy": f"{info['accuracy']:.6f}",
                "prune/macs_ratio": f"{info['macs_ratio']:.6f}",
                "prune/params_ratio": f"{info['params_ratio']:.6f}",
                "prune/target": f"{info['target']:.6f}",
                "best/reward": f"{self.best.reward:.6f}",
                "best/accuracy": f"{self.best.candidate.accuracy:.6f}",
                "best/macs_ratio": f"{self.best.candidate.macs_ratio:.6f}",
                "time/elapsed_s": f"{time.perf_counter() - self.started:.3f}",
                **{
                    key: f"{ratio:.4f}"
                    for key, ratio in zip(
                        self._keep_fields, self.best.candidate.keep_ratios, strict=True
                    )
                },
            }
        )
        self._csv_handle.flush()
        self.write_best()

    def write_best(self) -> None:
        """Rewrite ``best.json`` atomically."""
        if self.best is not None:
            atomic_write_json(self.run_dir / "best.json", self.best.to_dict())

    def checkpoint(self, algorithm: BaseAlgorithm) -> Path:
        """Save a checkpoint atomically; ``latest.json`` moves only once it is complete.

        Raises:
            RunError: the checkpoint could not be written; the previous one is intact.
        """
        root = self.run_dir / "checkpoints"
        name = f"ep{self.episodes:06d}"
        tmp = root / f".tmp-{name}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            buffer = io.BytesIO()
            torch.save(algorithm.get_parameters(), buffer)
            atomic_write_bytes(tmp / "params.pt", buffer.getvalue())
            state = {"episodes": self.episodes, "num_timesteps": int(algorithm.num_timesteps)}
            atomic_write_json(tmp / "state.json", state)
            final = root / name
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
            atomic_write_json(root / "latest.json", {"checkpoint": name, **state})
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = latest_checkpoint(self.run_dir)
            kept = previous.name if previous else "none"
            raise RunError(
                f"could not write checkpoint {name} in {root}: {exc.strerror or exc}; "
                f"the last good checkpoint ({kept}) is intact, resume from it with "
                f"`rlprune train --resume {self.run_dir}`"
            ) from None
        return root / name

    def close(self) -> None:
        """Close the episode log."""
        self._csv_handle.close()


class _EpisodeCallback(BaseCallback):
    """Feeds finished episodes to the recorder, checkpoints, and stops after N episodes."""

    def __init__(
        self,
        recorder: RunRecorder,
        total_episodes: int,
        checkpoint_every: int,
        on_episode: Callable[[RunRecorder], None] | None,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.total_episodes = total_episodes
        self.checkpoint_every = checkpoint_every
        self.on_episode = on_episode

    def _on_step(self) -> bool:
        for reward, done, info in zip(
            self.locals["rewards"], self.locals["dones"], self.locals["infos"], strict=True
        ):
            if not done or "accuracy" not in info:
                continue
            self.recorder.record(float(reward), info)
            self.logger.record_mean("episode/reward", float(reward))
            self.logger.record_mean("prune/accuracy", float(info["accuracy"]))
            self.logger.record_mean("prune/macs_ratio", float(info["macs_ratio"]))
            best = self.recorder.best
            if best is not None:
                self.logger.record("best/accuracy", best.candidate.accuracy)
                self.logger.record("best/macs_ratio", best.candidate.macs_ratio)
                for unit, ratio in zip(best.units, best.candidate.keep_ratios, strict=True):
                    self.logger.record(f"best/keep_ratio/{unit}", ratio)
            if self.checkpoint_every and self.recorder.episodes % self.checkpoint_every == 0:
                self.recorder.checkpoint(self.model)
            if self.on_episode is not None:
                self.on_episode(self.recorder)
        return self.recorder.episodes < self.total_episodes


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder ``latest.json`` points to, if any."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (OSError, ValueError, KeyError):
        return None
    path = run_dir / "checkpoints" / name
    return path if path.is_dir() else None


def _policy_metadata(
    env_config: EnvConfig, agent: AgentConfig, recorder: RunRecorder
) -> dict[str, Any]:
    return {
        "algo": agent.algo,
        "agent": agent.to_dict(),
        "min_keep": env_config.min_keep,
        "max_keep": env_config.max_keep,
        "reward": env_config.reward,
        **{key: getattr(env_config, key) for key in POLICY_ENV_KEYS},
        "target": env_config.target,
        "env": env_config.name,
        "model": env_config.model,
        "dataset": env_config.dataset,
        "training_episodes": recorder.episodes,
        "best": recorder.best.to_dict() if recorder.best else None,
    }


def _deterministic_episode(
    algorithm: BaseAlgorithm, task: PruningTask, env_config: EnvConfig, seed: int
) -> tuple[float, dict[str, Any]]:
    """One episode of the policy's deterministic actions: its reward and final info."""
    env = PruningEnv(task=task, config=env_config)
    obs, _ = env.reset(seed=seed)
    while True:
        action, _ = algorithm.predict(obs, deterministic=True)
        obs, reward, done, _, info = env.step(action)
        if done:
            return float(reward), info


def make_vec_env(task: PruningTask, env_config: EnvConfig, n_envs: int) -> DummyVecEnv:
    """``n_envs`` environments over one task (one model copy, one shared candidate cache)."""
    return DummyVecEnv([lambda: PruningEnv(task=task, config=env_config)] * n_envs)


def train(
    env_config: EnvConfig,
    agent: AgentConfig,
    settings: TrainSettings,
    *,
    run_dir: Path | None = None,
    runs_root: Path = Path("runs"),
    command: str = "",
    task: PruningTask | None = None,
    initial_policy: LoadedPolicy | None = None,
    on_episode: Callable[[RunRecorder], None] | None = None,
    _resume: bool = False,
) -> TrainResult:
    """Train ``agent`` on ``env_config`` for ``settings.episodes`` episodes.

    Ctrl-C stops cleanly: the checkpoint, ``best.json`` and the policy are saved
    and the result says ``interrupted``. ``initial_policy`` starts from a saved
    policy's weights (adaptation to a new model).
    """
    if settings.episodes < 1 or settings.n_envs < 1:
        raise RunError("--episodes and --n-envs must be at least 1")
    start = time.perf_counter()
    env_config = agent.env_config(env_config)
    task = task or load_task(env_config)
    if run_dir is None:
        run_dir = runs_root / run_folder_name(env_config.name, agent.name, settings.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not _resume:
        resolved = {
            "env": dataclasses.asdict(env_config),
            "agent": agent.to_dict(),
            "train": dataclasses.asdict(settings),
        }
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(_plain(resolved), sort_keys=False)
        )
        atomic_write_text(run_dir / "command.txt", command + "\n")
        atomic_write_json(run_dir / "versions.json", software_versions())

    vec_env = make_vec_env(task, env_config, settings.n_envs)
    algorithm = build_algorithm(agent, vec_env, len(task.analysis.units), seed=settings.seed)
    formats = ["csv"] + (["tensorboard"] if importlib.util.find_spec("tensorboard") else [])
    algorithm.set_logger(configure(str(run_dir / "sb3"), formats))
    recorder_start, best = 0, None
    if _resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise RunError(f"{run_dir} has no checkpoint to resume from; start a new run")
        params = torch.load(checkpoint / "params.pt", map_location="cpu", weights_only=True)
        algorithm.set_parameters(params, exact_match=True)
        state = json.loads((checkpoint / "state.json").read_text())
        recorder_start = int(state["episodes"])
        algorithm.num_timesteps = int(state["num_timesteps"])
        best = _read_best(run_dir)
        _truncate_log(run_dir / "episodes.csv", recorder_start)
    elif initial_policy is not None:
        if initial_policy.agent.algo != agent.algo:
            raise RunError(
                f"policy was trained with {initial_policy.agent.algo}, not {agent.algo}; "
                "adapt it with its own agent preset"
            )
        algorithm.policy.load_state_dict(initial_policy.network.state_dict())

    recorder = RunRecorder(run_dir, task, start_episode=recorder_start, best=best)
    callback = _EpisodeCallback(recorder, settings.episodes, settings.checkpoint_every, on_episode)
    interrupted = False
    evaluations_before = task.timings.evaluations
    try:
        if env_config.action_mode == "residual" and recorder.episodes == 0:
            # the policy's deterministic episode first: with zero_init_action, the prior
            reward, info = _deterministic_episode(algorithm, task, env_config, settings.seed)
            recorder.record(reward, info)
            if on_episode is not None:
                on_episode(recorder)
        if recorder.episodes < settings.episodes:
            remaining_steps = (settings.episodes - recorder.episodes + settings.n_envs) * len(
                task.analysis.units
            )
            algorithm.learn(
                total_timesteps=remaining_steps * 100,  # the callback stops at N episodes
                callback=callback,
                reset_num_timesteps=not _resume,
            )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        recorder.close()
    recorder.write_best()
    latest = latest_checkpoint(run_dir)
    if recorder.episodes and (latest is None or latest.name != f"ep{recorder.episodes:06d}"):
        recorder.checkpoint(algorithm)
    save_policy(
        algorithm.policy,
        run_dir / "policy",
        _policy_metadata(env_config, agent, recorder),
        feature_version=env_config.features,
    )
    return TrainResult(
        run_dir=run_dir,
        episodes=recorder.episodes,
        evaluations=task.timings.evaluations - evaluations_before,
        best=recorder.best,
        interrupted=interrupted,
        seconds=time.perf_counter() - start,
        algorithm=algorithm,
        history=recorder.history,
    )


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _truncate_log(path: Path, episodes: int) -> None:
    """Drop log rows after the checkpoint a resumed run restarts from."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",", 1)[0]) <= episodes]
    atomic_write_text(path, "".join(kept))


def _read_best(run_dir: Path) -> BestCandidate | None:
    path = run_dir / "best.json"
    if not path.is_file():
        return None
    return BestCandidate.from_dict(json.loads(path.read_text()))


def load_run(run_dir: str | Path) -> tuple[EnvConfig, AgentConfig, TrainSettings]:
    """The resolved configs of a run folder.

    Raises:
        RunError: the folder is not a run (no ``config.yaml``) or its config is unreadable.
    """
    path = Path(run_dir)
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise RunError(
            f"{str(path)!r} is not a run folder (no config.yaml); give a folder under runs/"
        )
    try:
        raw = yaml.safe_load(config_file.read_text())
        env_config = make_config(raw["env"])
        agent_raw = raw["agent"]
        agent = make_agent_config(
            agent_raw["name"], {"algo": agent_raw["algo"], **agent_raw["hyperparams"]}
        )
        settings = TrainSettings(**raw["train"])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise RunError(f"cannot read {config_file}: {exc}") from None
    return env_config, agent, settings


def resume(
    run_dir: str | Path,
    *,
    episodes: int | None = None,
    on_episode: Callable[[RunRecorder], None] | None = None,
) -> TrainResult:
    """Continue a run from its last checkpoint up to its episode count (or ``episodes``)."""
    env_config, agent, settings = load_run(run_dir)
    if episodes is not None:
        settings = dataclasses.replace(settings, episodes=episodes)
    return train(
        env_config, agent, settings, run_dir=Path(run_dir), on_episode=on_episode, _resume=True
    )
