"""Train a pruning agent: Stable-Baselines3 on :class:`~rlprune.env.pruning_env.PruningEnv`, with a run folder.

A run folder ``runs/{env}__{agent}__{seed}__{time}/`` keeps everything needed to
reproduce or continue a run::

    config.yaml        resolved env preset, agent preset and training settings
    command.txt        the exact command
    versions.json      torch / stable-baselines3 / gymnasium / torch-pruning versions
    episodes.csv       one row per episode (namespaced keys)
    best.json          best candidate so far, rewritten atomically after every episode
    checkpoints/       epNNNNNN/ (see rlprune.rl.checkpoint) and latest.json
    policy/            the policy artifact (rlprune.rl.policy), written at the end or on Ctrl-C
    sb3/               Stable-Baselines3 logs (CSV, TensorBoard when installed); a resumed
                       session logs to sb3/resume-epNNNNNN/

Checkpoints are taken at update boundaries (PPO: every ``episodes_per_update``
episodes; DDPG/TD3: every episode), written once ``checkpoint_every`` episodes or
``checkpoint_seconds`` seconds have passed since the last one, whichever comes
first, and at the end or on Ctrl-C / SIGTERM. ``resume`` restores the weights,
optimizer, random generators and environments of the latest one and drops the
log rows after it: those episodes run again, identically, so a resumed run
produces the same ``episodes.csv`` as an uninterrupted one with the same seed
(apart from ``time/elapsed_s``). A fault therefore costs at most the episodes
since the last checkpoint: ``checkpoint_seconds`` plus one update's rollout.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from ..env.pruning_env import PruningEnv
from ..errors import ConfigError, RunError
from ..evaluation.candidates import Candidate
from ..evaluation.task import PruningTask
from ..files import atomic_write_bytes, atomic_write_json, atomic_write_text
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
from .policy import POLICY_ENV_KEYS, LoadedPolicy, save_policy

__all__ = [
    "BestCandidate",
    "RunRecorder",
    "TrainResult",
    "TrainSettings",
    "check_resume_overrides",
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
    """Seed of the agent, the environments and every random generator they use."""
    n_envs: int = 1
    """Environments stepped together (one model copy, one candidate cache)."""
    checkpoint_every: int = 50
    """Write a checkpoint at the first update boundary after every this many episodes
    (0: not by episode count)."""
    checkpoint_seconds: float = 30.0
    """...or once this many seconds have passed since the last one, whichever comes
    first (0: not by time). The end of the run and Ctrl-C / SIGTERM always write one."""


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
    stop_signal: int = 0
    """The signal that stopped the run (``signal.SIGINT`` for Ctrl-C, ``signal.SIGTERM``),
    0 when it ran to the end."""
    resumed_from: int | None = None
    """Episodes covered by the checkpoint this session resumed from (``None``: not resumed)."""


def _log_fields(task: PruningTask) -> tuple[str, ...]:
    """The columns of a run's ``episodes.csv``: :data:`CSV_FIELDS` and the best
    candidate's keep-ratio per unit."""
    return CSV_FIELDS + tuple(f"best/keep_ratio/{u.name}" for u in task.analysis.units)


def run_folder_name(env: str, agent: str, seed: int) -> str:
    """``{env}__{agent}__{seed}__{time}``, CleanRL style."""
    return f"{env}__{agent}__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


class RunRecorder:
    """Writes a run's per-episode log, best candidate and checkpoints.

    ``start_episode`` 0 starts ``episodes.csv`` afresh; otherwise rows are appended
    after the ``start_episode`` rows already there. ``elapsed_s`` is the time the run
    had already taken (the ``time/elapsed_s`` column continues from it).
    """

    def __init__(
        self,
        run_dir: Path,
        task: PruningTask,
        start_episode: int = 0,
        best: BestCandidate | None = None,
        elapsed_s: float = 0.0,
    ) -> None:
        self.run_dir = run_dir
        self.units = tuple(u.name for u in task.analysis.units)
        self.episodes = start_episode
        self.best = best
        self.task = task
        self.history: list[Candidate] = []
        """Candidates evaluated by this session's episodes, in order."""
        self.started = time.perf_counter() - elapsed_s
        log = run_dir / "episodes.csv"
        new_file = start_episode == 0 or not log.exists()
        self._keep_fields = _log_fields(task)[len(CSV_FIELDS) :]
        self._csv_handle = log.open("w" if new_file else "a", newline="")
        self._csv = csv.DictWriter(self._csv_handle, fieldnames=self.fieldnames)
        if new_file:
            self._csv.writeheader()
            self._csv_handle.flush()

    @property
    def fieldnames(self) -> tuple[str, ...]:
        """The columns of ``episodes.csv``."""
        return CSV_FIELDS + self._keep_fields

    def elapsed(self) -> float:
        """Seconds the run has taken, over every session."""
        return time.perf_counter() - self.started

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
                "time/elapsed_s": f"{self.elapsed():.3f}",
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
        """Rewrite ``best.json`` atomically (remove it while there is no best)."""
        if self.best is not None:
            atomic_write_json(self.run_dir / "best.json", self.best.to_dict())
        else:
            (self.run_dir / "best.json").unlink(missing_ok=True)

    def checkpoint(self, snapshot: Snapshot, *, reason: str = "episodes") -> Path:
        """Write ``snapshot`` as the run's latest checkpoint (see
        :func:`rlprune.rl.checkpoint.write_checkpoint`).

        Raises:
            RunError: the checkpoint could not be written; the previous one is intact.
        """
        root = self.run_dir / "checkpoints"
        name = f"ep{snapshot.episodes:06d}"
        try:
            return write_checkpoint(snapshot, root, reason=reason)
        except OSError as exc:
            previous = latest_checkpoint(self.run_dir)
            kept = previous.name if previous else "none"
            raise RunError(
                f"could not write checkpoint {name} in {root}: {exc.strerror or exc}; "
                f"the last good checkpoint ({kept}) is intact, resume from it with "
                f"`rlprune train --resume {self.run_dir}`"
            ) from None

    def close(self) -> None:
        """Close the episode log."""
        self._csv_handle.close()


class _EpisodeCallback(BaseCallback):
    """Feeds finished episodes to the recorder, snapshots the run at every update
    boundary (writing it when a checkpoint is due), and stops after N episodes."""

    def __init__(
        self,
        recorder: RunRecorder,
        vec_env: DummyVecEnv,
        settings: TrainSettings,
        on_episode: Callable[[RunRecorder], None] | None,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.vec_env = vec_env
        self.total_episodes = settings.episodes
        self.checkpoint_every = settings.checkpoint_every
        self.checkpoint_seconds = settings.checkpoint_seconds
        self.on_episode = on_episode
        self.snapshot: Snapshot | None = None
        """The run at the latest update boundary."""
        self.written_episodes = recorder.episodes
        """Episodes covered by the last checkpoint written (or resumed from)."""
        self.written_at = time.monotonic()

    def _on_rollout_start(self) -> None:
        best = self.recorder.best
        self.snapshot = capture(
            self.model,
            self.vec_env,
            episodes=self.recorder.episodes,
            elapsed_s=self.recorder.elapsed(),
            best=best.to_dict() if best else None,
        )
        reason = self._due()
        if reason is not None:
            self.write(reason)

    def _due(self) -> str | None:
        assert self.snapshot is not None
        episodes = self.snapshot.episodes
        if episodes <= self.written_episodes:
            return None
        every = self.checkpoint_every
        if every and episodes // every > self.written_episodes // every:
            return "episodes"
        if self.checkpoint_seconds and (
            time.monotonic() - self.written_at >= self.checkpoint_seconds
        ):
            return "time"
        return None

    def write(self, reason: str) -> None:
        """Write the latest snapshot as a checkpoint."""
        assert self.snapshot is not None
        self.recorder.checkpoint(self.snapshot, reason=reason)
        self.written_episodes = self.snapshot.episodes
        self.written_at = time.monotonic()

    def pending(self) -> bool:
        """Whether the latest snapshot covers episodes no checkpoint has."""
        return self.snapshot is not None and self.snapshot.episodes > self.written_episodes

    def _rollout_ends_here(self) -> bool:
        if isinstance(self.model, OnPolicyAlgorithm):
            return int(self.locals["n_steps"]) + 1 >= int(self.locals["n_rollout_steps"])
        return True  # off-policy agents here collect one episode per env per rollout

    def _on_step(self) -> bool:
        if self.recorder.episodes >= self.total_episodes:
            return False  # the last update is done; this step starts an unneeded episode
        finished = False
        for reward, done, info in zip(
            self.locals["rewards"], self.locals["dones"], self.locals["infos"], strict=True
        ):
            if not done or "accuracy" not in info:
                continue
            finished = True
            reward = info.get("reward", reward)  # the episode's, without shaping
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
            if self.on_episode is not None:
                self.on_episode(self.recorder)
        if self.recorder.episodes < self.total_episodes:
            return True
        # Done. A rollout that ends with this step is still learned from, so that the
        # final checkpoint is the update boundary after it; a partial one is dropped.
        return finished and self._rollout_ends_here()


def _policy_metadata(
    env_config: EnvConfig, agent: AgentConfig, recorder: RunRecorder
) -> dict[str, Any]:
    return {
        "algo": agent.algo,
        "agent": agent.to_dict(),
        "min_keep": env_config.task.min_keep,
        "max_keep": env_config.task.max_keep,
        "reward": env_config.env.reward,
        **{key: env_config.to_dict()[key] for key in POLICY_ENV_KEYS},
        "target": env_config.env.target.to_value(),
        "env": env_config.name,
        "model": env_config.task.model,
        "dataset": env_config.task.dataset,
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
            return float(info.get("reward", reward)), info


class PrefetchVecEnv(DummyVecEnv):
    """SB3's ``DummyVecEnv`` whose environments end their episodes together in parallel.

    Every environment walks the same units, so all of them take their last step at once.
    Before stepping, the configurations those last steps will evaluate are collected
    (:meth:`PruningEnv.pending_channels`) and scored together on the task's workers
    (:meth:`PruningTask.prefetch`); each environment then finds its candidate cached. The
    environments, the cache and the cost ledger stay in this process; only channel tuples
    travel. In-process (one worker) it steps exactly like ``DummyVecEnv``.
    """

    def __init__(self, task: PruningTask, env_fns: list[Any]) -> None:
        super().__init__(env_fns)
        self.task = task

    def step_wait(self) -> Any:
        """Score the episodes ending now in parallel, then step as ``DummyVecEnv`` does."""
        if self.task.service.workers > 1:
            pending = [
                env.unwrapped.pending_channels(action)  # type: ignore[attr-defined]
                for env, action in zip(self.envs, self.actions, strict=True)
            ]
            ending = [p for p in pending if p is not None]
            if len(ending) > 1:
                self.task.prefetch(ending)
        return super().step_wait()


def make_vec_env(task: PruningTask, env_config: EnvConfig, n_envs: int) -> PrefetchVecEnv:
    """``n_envs`` environments over one task (one model copy, one shared candidate cache),
    each in SB3's ``Monitor`` so the logs carry ``rollout/ep_rew_mean`` and ``ep_len_mean``;
    with several workers their episodes are scored in parallel (:class:`PrefetchVecEnv`)."""
    return PrefetchVecEnv(
        task, [lambda: Monitor(PruningEnv(task=task, config=env_config))] * n_envs
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, so that it stops the way Ctrl-C does."""

    signum = signal.SIGTERM


@contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`_Terminated` (a ``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _clear_run_files(run_dir: Path) -> None:
    """A new run in a folder that held one starts its log, best and checkpoints clean."""
    for name in ("episodes.csv", "best.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)


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

    Ctrl-C and SIGTERM stop cleanly: the latest update boundary is checkpointed,
    ``best.json`` and the policy are saved, and the result says ``interrupted``
    (and which signal). ``initial_policy`` starts from a saved policy's weights
    (adaptation to a new model). A ``run_dir`` that held an earlier run is started
    afresh (its log, best candidate and checkpoints are replaced).
    """
    if settings.episodes < 1 or settings.n_envs < 1:
        raise RunError("--episodes and --n-envs must be at least 1")
    if settings.checkpoint_every < 0 or settings.checkpoint_seconds < 0:
        raise RunError(
            "--checkpoint-every and --checkpoint-seconds must be 0 or more (0 turns that "
            "trigger off; the end of the run is always checkpointed)"
        )
    if settings.n_envs > 1 and agent.algo not in ON_POLICY:
        raise RunError(
            f"--n-envs {settings.n_envs}: {agent.algo.upper()} learns once per episode from "
            "one environment; drop --n-envs (or train PPO)"
        )
    start = time.perf_counter()
    env_config = agent.env_config(env_config)
    task = task or load_task(env_config)
    if run_dir is None:
        run_dir = runs_root / run_folder_name(env_config.name, agent.name, settings.seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    snapshot: Snapshot | None = None
    if _resume:
        checkpoint = latest_checkpoint(run_dir)
        pointer = run_dir / "checkpoints" / "latest.json"
        if checkpoint is None and pointer.exists():
            raise RunError(
                f"{pointer} is damaged or names a missing checkpoint; point it at one of the "
                "epNNNNNN folders beside it, or delete it to resume from the start"
            )
        # no checkpoint yet (a fault before the first one): the run starts again
        snapshot = read_checkpoint(checkpoint) if checkpoint is not None else None
    else:
        resolved = {
            "env": env_config.to_dict(),
            "agent": agent.to_dict(),
            "train": dataclasses.asdict(settings),
            # a resume imports the model's code only if its file is unchanged
            "model_sha256": model_fingerprint(env_config.task),
            "dataset_sha256": dataset_fingerprint(env_config.task),
        }
        atomic_write_text(
            run_dir / "config.yaml", yaml.safe_dump(_plain(resolved), sort_keys=False)
        )
        atomic_write_text(run_dir / "command.txt", command + "\n")
        atomic_write_json(run_dir / "versions.json", software_versions())
        _clear_run_files(run_dir)

    n_units = len(task.analysis.units)
    vec_env = make_vec_env(task, env_config, settings.n_envs)
    algorithm = build_algorithm(agent, vec_env, n_units, seed=settings.seed)
    formats = ["csv"] + (["tensorboard"] if importlib.util.find_spec("tensorboard") else [])
    logs = run_dir / "sb3"
    if snapshot is not None:
        logs = logs / f"resume-ep{snapshot.episodes:06d}"  # keep the earlier sessions' logs
    algorithm.set_logger(configure(str(logs), formats))
    start_episode, best, elapsed = 0, None, 0.0
    if snapshot is not None:
        restore(snapshot, algorithm, vec_env)  # the generators last: nothing draws after it
        start_episode = snapshot.episodes
        best = _snapshot_best(snapshot, run_dir)
        elapsed = float(snapshot.state.get("elapsed_s", 0.0))
    elif initial_policy is not None:
        if initial_policy.agent.algo != agent.algo:
            raise RunError(
                f"policy was trained with {initial_policy.agent.algo}, not {agent.algo}; "
                "adapt it with its own agent preset"
            )
        algorithm.policy.load_state_dict(initial_policy.network.state_dict())

    if _resume and start_episode:
        # the log says what the checkpoint covers; later episodes run again, identically
        _truncate_log(run_dir / "episodes.csv", start_episode, _log_fields(task))
    recorder = RunRecorder(run_dir, task, start_episode=start_episode, best=best, elapsed_s=elapsed)
    if _resume:
        recorder.write_best()  # the best of the episodes kept, none of those dropped
    callback = _EpisodeCallback(recorder, vec_env, settings, on_episode)
    stop_signal = 0
    evaluations_before = task.timings.evaluations
    # far more steps than needed (the callback stops at N episodes); the same total for a
    # resumed run as for an uninterrupted one, so step-based schedules line up
    total_steps = (settings.episodes + settings.n_envs) * n_units * 100
    try:
        with _sigterm_stops_like_ctrl_c():
            if env_config.env.action_mode == "residual" and recorder.episodes == 0:
                # the policy's deterministic episode first: with zero_init_action, the prior
                reward, info = _deterministic_episode(algorithm, task, env_config, settings.seed)
                recorder.record(reward, info)
                if on_episode is not None:
                    on_episode(recorder)
            if recorder.episodes < settings.episodes:
                algorithm.learn(
                    total_timesteps=total_steps - (algorithm.num_timesteps if snapshot else 0),
                    callback=callback,
                    reset_num_timesteps=snapshot is None,
                )
                if algorithm.logger.name_to_value:
                    # the episodes after the last update (SB3 writes its logs per update)
                    algorithm.dump_logs()
    except KeyboardInterrupt as interrupt:
        stop_signal = int(getattr(interrupt, "signum", signal.SIGINT))
    finally:
        recorder.close()
    recorder.write_best()
    if callback.pending():
        callback.write("interrupt" if stop_signal else "end")
    save_policy(
        algorithm.policy,
        run_dir / "policy",
        _policy_metadata(env_config, agent, recorder),
        feature_version=env_config.env.features,
    )
    return TrainResult(
        run_dir=run_dir,
        episodes=recorder.episodes,
        evaluations=task.timings.evaluations - evaluations_before,
        best=recorder.best,
        interrupted=bool(stop_signal),
        seconds=time.perf_counter() - start,
        algorithm=algorithm,
        history=recorder.history,
        stop_signal=stop_signal,
        resumed_from=start_episode if _resume else None,
    )


def _snapshot_best(snapshot: Snapshot, run_dir: Path) -> BestCandidate | None:
    """The best candidate among the episodes ``snapshot`` covers."""
    if snapshot.exact:
        if snapshot.best is None:
            return None
        try:
            return BestCandidate.from_dict(snapshot.best)
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise RunError(
                f"best.json of checkpoint ep{snapshot.episodes:06d} in {run_dir} is damaged "
                f"({exc}); start a new run"
            ) from None
    warnings.warn(
        f"checkpoint ep{snapshot.episodes:06d} of {run_dir} was written by an older rlprune "
        "without random-generator state: the run continues from its weights but will not "
        "match an uninterrupted run",
        stacklevel=3,
    )
    best = _read_best(run_dir)
    return best if best is not None and best.episode <= snapshot.episodes else None


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _truncate_log(path: Path, episodes: int, fieldnames: tuple[str, ...]) -> None:
    """Keep the header and the first ``episodes`` rows of ``episodes.csv`` (those a
    checkpoint covers), byte for byte.

    Raises:
        RunError: the header is not this run's, or a kept row is missing or damaged.
    """
    lines = path.read_bytes().splitlines(keepends=True) if path.is_file() else []
    header = next(csv.reader([lines[0].decode("utf-8", "replace")]), []) if lines else []
    if tuple(header) != fieldnames:
        raise RunError(
            f"{path} does not have this run's columns (another model's log?); "
            "restore the run folder's own episodes.csv or start a new run"
        )
    for number in range(1, episodes + 1):
        row = lines[number].decode("utf-8", "replace") if number < len(lines) else ""
        first = next(csv.reader([row]), [""])[0] if row.strip() else "(missing)"
        if first != str(number) or not row.endswith("\n"):
            raise RunError(
                f"{path} is damaged: row {number} should be episode {number} (checkpoint "
                f"ep{episodes:06d} covers {episodes}), found {first!r}; restore the file "
                "or start a new run"
            )
    atomic_write_bytes(path, b"".join(lines[: episodes + 1]))


def _logged_episodes(path: Path) -> int:
    """Rows of ``episodes.csv`` numbered 1, 2, ... from the top (0 if there is none)."""
    if not path.is_file():
        return 0
    count = 0
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)
        for row in rows:
            if not row or row[0] != str(count + 1):
                break
            count += 1
    return count


def _read_best(run_dir: Path) -> BestCandidate | None:
    path = run_dir / "best.json"
    if not path.is_file():
        return None
    try:
        return BestCandidate.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


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
            agent_raw["name"],
            {
                "algo": agent_raw["algo"],
                **agent_raw["hyperparams"],
                "env": agent_raw.get("env") or {},
            },
        )
        settings = TrainSettings(**raw["train"])
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise RunError(f"cannot read {config_file}: {exc}") from None
    return env_config, agent, settings


def _preset_name(value: str) -> str:
    """The name a preset given as a bundled name or a YAML path gets by default."""
    return Path(value).stem if value.endswith((".yaml", ".yml")) else value


def _check_more_episodes(run_dir: Path, episodes: int | None) -> None:
    done = _logged_episodes(run_dir / "episodes.csv")
    if episodes is not None and episodes < done:
        raise RunError(
            f"--episodes {episodes} is fewer than the {done} episodes {run_dir} has done; a "
            f"resumed run only continues: give --episodes {done} or more, or drop --episodes"
        )


def check_resume_overrides(
    run_dir: str | Path,
    *,
    env: str | None = None,
    target: float | None = None,
    agent: str | None = None,
    seed: int | None = None,
    n_envs: int | None = None,
    episodes: int | None = None,
) -> None:
    """Refuse settings given together with ``--resume`` that differ from the run's own.

    A resumed run continues with the settings in its ``config.yaml``; a flag that asks
    for something else would be silently ignored, so it is an error instead (``None``:
    not given). ``episodes`` may raise the run's episode count, not go below the
    episodes it has done.

    Raises:
        RunError: naming the first conflicting flag.
    """
    env_config, agent_config, settings = load_run(run_dir)
    _check_more_episodes(Path(run_dir), episodes)
    low, high = env_config.env.target
    run_target = f"{low}" if low == high else f"[{low}, {high}]"
    conflicts = [
        ("--env", env, env is not None and _preset_name(env) != env_config.name, env_config.name),
        (
            "--target",
            target,
            target is not None and (low, high) != (float(target), float(target)),
            run_target,
        ),
        (
            "--agent",
            agent,
            agent is not None and _preset_name(agent) != agent_config.name,
            agent_config.name,
        ),
        ("--seed", seed, seed is not None and seed != settings.seed, settings.seed),
        ("--n-envs", n_envs, n_envs is not None and n_envs != settings.n_envs, settings.n_envs),
    ]
    for flag, given, differs, own in conflicts:
        if differs:
            raise RunError(
                f"{flag} {given} conflicts with the run in {run_dir} ({flag} {own}); a resumed "
                f"run keeps its own settings: drop {flag}, or start a new run without --resume"
            )


def resume(
    run_dir: str | Path,
    *,
    episodes: int | None = None,
    on_episode: Callable[[RunRecorder], None] | None = None,
    checkpoint_every: int | None = None,
    checkpoint_seconds: float | None = None,
    trust_model: str | None = None,
    trust_dataset: str | None = None,
) -> TrainResult:
    """Continue a run from its last checkpoint up to its episode count (or ``episodes``).

    Model code the run folder names (a ``.py`` file or a module, not a zoo model) is
    imported only if its file has the sha256 recorded at train time, or if the caller
    names the same spec in ``trust_model`` (``--model`` on the command line); dataset code
    likewise, with ``trust_dataset`` (``--dataset``).

    Without a checkpoint (a fault before the first one) the run starts again from the
    beginning. Episodes logged after the checkpoint run again and give the same rows.
    A new ``episodes`` (or checkpoint interval) is recorded in the run's ``config.yaml``.

    Raises:
        RunError: ``episodes`` is fewer than the run has already done, or the run
            folder or its checkpoint is unreadable.
    """
    path = Path(run_dir)
    env_config, agent, settings = load_run(path)
    _check_more_episodes(path, episodes)
    if trust_model is not None and trust_model != env_config.task.model:
        raise RunError(
            f"--model {trust_model} conflicts with the run in {path} (--model "
            f"{env_config.task.model}); a resumed run keeps its model: drop --model, or start a "
            "new run without --resume"
        )
    if trust_dataset is not None and trust_dataset != env_config.task.dataset:
        raise RunError(
            f"--dataset {trust_dataset} conflicts with the run in {path} (--dataset "
            f"{env_config.task.dataset}); a resumed run keeps its dataset: drop --dataset, or start "
            "a new run without --resume"
        )
    raw_config = yaml.safe_load((path / "config.yaml").read_text())
    if trust_model is None:
        check_recorded_model(env_config.task, raw_config.get("model_sha256"), f"run folder {path}")
    if trust_dataset is None:
        check_recorded_dataset(
            env_config.task, raw_config.get("dataset_sha256"), f"run folder {path}"
        )
    changes: dict[str, Any] = {
        "episodes": episodes,
        "checkpoint_every": checkpoint_every,
        "checkpoint_seconds": checkpoint_seconds,
    }
    changes = {k: v for k, v in changes.items() if v is not None and v != getattr(settings, k)}
    if changes:
        settings = dataclasses.replace(settings, **changes)
        raw = yaml.safe_load((path / "config.yaml").read_text())
        raw["train"] = dataclasses.asdict(settings)
        atomic_write_text(path / "config.yaml", yaml.safe_dump(_plain(raw), sort_keys=False))
    return train(env_config, agent, settings, run_dir=path, on_episode=on_episode, _resume=True)
