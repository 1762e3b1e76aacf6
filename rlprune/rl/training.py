"""Train a pruning agent: Stable-Baselines3 on :class:`~rlprune.env.pruning_env.PruningEnv`, with a run folder.

The run folder, its checkpoints and resume are the run base's (:mod:`rlprune.rl.run`;
the files are listed there); a single-network run writes ``config.yaml`` and ``best.json``
(:class:`~rlprune.rl.recorder.RunRecorder`).

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

import dataclasses
import importlib.util
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from ..env.pruning_env import PruningEnv
from ..errors import ConfigError, RunError
from ..evaluation.candidates import Candidate
from ..evaluation.task import PruningTask
from ..files import atomic_write_text
from ..mdp.features import features_for
from ..mdp.settings import EnvConfig, make_config
from ..presets.tasks import (
    check_recorded_dataset,
    check_recorded_model,
    dataset_fingerprint,
    load_task,
    model_fingerprint,
    trust_task_code,
)
from .agents import ON_POLICY, AgentConfig, build_algorithm, make_agent_config
from .callbacks import CheckpointAtUpdates, ObservationRanges, run_callback
from .checkpoint import Snapshot, restore
from .policy import POLICY_ENV_KEYS, LoadedPolicy, save_policy
from .recorder import BestCandidate, RunRecorder
from .run import (
    check_latest_pointer,
    check_more_episodes,
    learn_up_to,
    open_run,
    run_folder_name,
    sb3_logger,
    until_stopped,
)

__all__ = [
    "PrefetchVecEnv",
    "TrainResult",
    "TrainSettings",
    "check_resume_overrides",
    "load_run",
    "make_vec_env",
    "resume",
    "train",
]


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
    _check_settings(agent, settings)
    start = time.perf_counter()
    env_config = agent.env_config(env_config)
    task = task or load_task(env_config)
    if run_dir is None:
        run_dir = runs_root / run_folder_name(env_config.name, agent.name, settings.seed)
    if _resume:
        check_latest_pointer(run_dir)
    else:  # the user named this code to train: a resume of the run may import it
        trust_task_code(env_config.task)
    snapshot = open_run(
        run_dir,
        command,
        lambda: _write_config(run_dir, env_config, agent, settings, task),
        resume=_resume,
    )
    vec_env = make_vec_env(task, env_config, settings.n_envs)
    algorithm = build_algorithm(agent, vec_env, len(task.analysis.units), seed=settings.seed)
    formats = ["csv"] + (["tensorboard"] if importlib.util.find_spec("tensorboard") else [])
    algorithm.set_logger(sb3_logger(run_dir, snapshot, formats))
    if snapshot is None and initial_policy is not None:
        _load_initial_policy(algorithm, initial_policy, agent)
    recorder = _open_recorder(run_dir, task, algorithm, vec_env, snapshot)
    if _resume:
        recorder.write_best()  # the best of the episodes kept, none of those dropped
    ranges = _observation_ranges(env_config, snapshot, initial_policy)
    checkpoints = CheckpointAtUpdates(
        run_dir,
        vec_env,
        recorder,
        every=settings.checkpoint_every,
        seconds=settings.checkpoint_seconds,
        extra_state=lambda: {"observation_ranges": ranges.to_state()},
    )
    hook = (lambda: on_episode(recorder)) if on_episode is not None else None
    callback = run_callback(
        checkpoints, recorder, settings.episodes, before=[ranges], on_episode=hook
    )
    evaluations_before = task.timings.evaluations
    try:
        stop_signal = until_stopped(
            lambda: _run_episodes(
                algorithm, task, env_config, settings, recorder, callback, snapshot, hook, ranges
            )
        )
    finally:
        recorder.close()
    recorder.write_best()
    checkpoints.finish("interrupt" if stop_signal else "end")
    save_policy(
        algorithm.policy,
        run_dir / "policy",
        _policy_metadata(env_config, agent, recorder, ranges),
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
        resumed_from=(snapshot.episodes if snapshot else 0) if _resume else None,
    )


def _check_settings(agent: AgentConfig, settings: TrainSettings) -> None:
    """Refuse settings no run can have.

    Raises:
        RunError: naming the flag.
    """
    if settings.episodes < 1 or settings.n_envs < 1:
        raise RunError("--episodes and --n-envs must be at least 1")
    if not 0 <= settings.seed <= 2**32 - 1:
        raise RunError(f"--seed {settings.seed} is out of range; give a seed from 0 to 2**32 - 1")
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


def _write_config(
    run_dir: Path,
    env_config: EnvConfig,
    agent: AgentConfig,
    settings: TrainSettings,
    task: PruningTask,
) -> None:
    """A new run's ``config.yaml``: everything needed to reproduce or resume it, and the
    CPU use it ran with (``threads``: this process's torch threads; ``workers``)."""
    resolved = {
        "env": env_config.to_dict(),
        "agent": agent.to_dict(),
        "train": dataclasses.asdict(settings),
        "threads": torch.get_num_threads(),
        "workers": task.service.workers,
        # a resume imports the model's code only if its file is unchanged
        "model_sha256": model_fingerprint(env_config.task),
        "dataset_sha256": dataset_fingerprint(env_config.task),
    }
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(_plain(resolved), sort_keys=False))


def _load_initial_policy(
    algorithm: BaseAlgorithm, initial_policy: LoadedPolicy, agent: AgentConfig
) -> None:
    """Start from a saved policy's weights (adaptation to a new model).

    Raises:
        RunError: the policy was trained with another algorithm.
    """
    if initial_policy.agent.algo != agent.algo:
        raise RunError(
            f"policy was trained with {initial_policy.agent.algo}, not {agent.algo}; "
            "adapt it with its own agent preset"
        )
    algorithm.policy.load_state_dict(initial_policy.network.state_dict())


def _open_recorder(
    run_dir: Path,
    task: PruningTask,
    algorithm: BaseAlgorithm,
    vec_env: DummyVecEnv,
    snapshot: Snapshot | None,
) -> RunRecorder:
    """The run's recorder, afresh or (``snapshot`` restored into ``algorithm`` and
    ``vec_env`` first) where the checkpoint left it: its log rows, best and clock."""
    if snapshot is None:
        return RunRecorder(run_dir, task)
    restore(snapshot, algorithm, vec_env)  # the generators last: nothing draws after it
    best = _snapshot_best(snapshot, run_dir)
    if best is not None:
        _check_best_fits(best, task, run_dir / "checkpoints" / f"ep{snapshot.episodes:06d}")
    return RunRecorder(
        run_dir,
        task,
        start_episode=snapshot.episodes,
        best=best,
        elapsed_s=float(snapshot.state.get("elapsed_s", 0.0)),
    )


def _observation_ranges(
    env_config: EnvConfig, snapshot: Snapshot | None, initial_policy: LoadedPolicy | None
) -> ObservationRanges:
    """The range every observation feature took, as the checkpoint left it (or the
    initial policy's ranges, for an adaptation): recorded in the policy so that ``apply``
    can tell a network outside them."""
    ranges = ObservationRanges(features_for(env_config.env.features))
    saved = snapshot.state.get("observation_ranges") if snapshot is not None else None
    if saved:
        ranges.load_state(saved)
    elif snapshot is None and initial_policy is not None:
        ranges.widen(initial_policy.metadata.get("feature_ranges") or {})
    return ranges


def _run_episodes(
    algorithm: BaseAlgorithm,
    task: PruningTask,
    env_config: EnvConfig,
    settings: TrainSettings,
    recorder: RunRecorder,
    callback: CallbackList,
    snapshot: Snapshot | None,
    on_episode: Callable[[], None] | None,
    ranges: ObservationRanges,
) -> None:
    """The run's episodes: a residual agent's deterministic one first, then learning."""
    if env_config.env.action_mode == "residual" and recorder.episodes == 0:
        # the policy's deterministic episode first: with zero_init_action, the prior
        reward, info = _deterministic_episode(
            algorithm, task, env_config, settings.seed, ranges.observe
        )
        recorder.record(reward, info)
        if on_episode is not None:
            on_episode()
    if recorder.episodes < settings.episodes:
        # far more steps than needed (the callback stops at N episodes); the same total for
        # a resumed run as for an uninterrupted one, so step-based schedules line up
        total_steps = (settings.episodes + settings.n_envs) * len(task.analysis.units) * 100
        learn_up_to(algorithm, total_steps, callback, resumed=snapshot is not None)
        if algorithm.logger.name_to_value:
            # the episodes after the last update (SB3 writes its logs per update)
            algorithm.dump_logs()


def _deterministic_episode(
    algorithm: BaseAlgorithm,
    task: PruningTask,
    env_config: EnvConfig,
    seed: int,
    observe: Callable[[np.ndarray], None],
) -> tuple[float, dict[str, Any]]:
    """One episode of the policy's deterministic actions (each observation handed to
    ``observe``): its reward and final info."""
    env = PruningEnv(task=task, config=env_config)
    obs, _ = env.reset(seed=seed)
    while True:
        observe(obs)
        action, _ = algorithm.predict(obs, deterministic=True)
        obs, reward, done, _, info = env.step(action)
        if done:
            return float(info.get("reward", reward)), info


def _policy_metadata(
    env_config: EnvConfig, agent: AgentConfig, recorder: RunRecorder, ranges: ObservationRanges
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
        # what the policy has seen: apply tells a network outside it (--trust)
        "feature_ranges": ranges.feature_ranges(),
    }


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
        stacklevel=4,
    )
    best = _read_best(run_dir)
    return best if best is not None and best.episode <= snapshot.episodes else None


def _check_best_fits(best: BestCandidate, task: PruningTask, checkpoint: Path) -> None:
    """Refuse a checkpoint's best candidate whose channels this network cannot have.

    Raises:
        RunError: naming the file and the field.
    """
    full = task.analysis.channels
    channels = best.candidate.channels
    if len(channels) != len(full) or any(
        not 1 <= int(n) <= int(c) for n, c in zip(channels, full, strict=False)
    ):
        raise RunError(
            f"{checkpoint / 'best.json'} is damaged: 'channels' {list(channels)} do not fit "
            f"the network's {len(full)} units of {[int(c) for c in full]} channels; point "
            "checkpoints/latest.json at an earlier checkpoint, or start a new run"
        )


def _read_best(run_dir: Path) -> BestCandidate | None:
    path = run_dir / "best.json"
    if not path.is_file():
        return None
    try:
        return BestCandidate.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# --- reading a run back and resuming it ------------------------------------------------


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
    except (yaml.YAMLError, KeyError, TypeError, ConfigError, UnicodeDecodeError) as exc:
        raise RunError(f"cannot read {config_file}: {exc}") from None
    _check_recorded_settings(config_file, settings)
    return env_config, agent, settings


def _check_recorded_settings(config_file: Path, settings: TrainSettings) -> None:
    """Refuse a run's ``train:`` settings of the wrong type or range (an edited file).

    Raises:
        RunError: naming the file and the field.
    """
    for item in dataclasses.fields(TrainSettings):
        value = getattr(settings, item.name)
        number = isinstance(value, int) or (
            item.name == "checkpoint_seconds" and isinstance(value, float)
        )
        least = 1 if item.name in ("episodes", "n_envs") else 0
        if isinstance(value, bool) or not number or not least <= value < float("inf"):
            raise RunError(
                f"{config_file} is damaged: train.{item.name} must be a number of at least "
                f"{least}, got {value!r}; restore the file or start a new run"
            )


def _preset_name(value: str) -> str:
    """The name a preset given as a bundled name or a YAML path gets by default."""
    return Path(value).stem if value.endswith((".yaml", ".yml")) else value


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
    check_more_episodes(Path(run_dir), episodes)
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
    imported only if this user trusted it when training on this machine and its file is
    unchanged since (:func:`rlprune.code.is_trusted_code`), or if the caller names the
    same spec in ``trust_model`` (``--model`` on the command line, which trusts it from
    then on); dataset code likewise, with ``trust_dataset`` (``--dataset``).

    Without a checkpoint (a fault before the first one) the run starts again from the
    beginning. Episodes logged after the checkpoint run again and give the same rows.
    A new ``episodes`` (or checkpoint interval) is recorded in the run's ``config.yaml``.

    Raises:
        RunError: ``episodes`` is fewer than the run has already done, or the run
            folder or its checkpoint is unreadable.
    """
    path = Path(run_dir)
    env_config, agent, settings = load_run(path)
    check_more_episodes(path, episodes)
    _check_run_code(path, env_config, trust_model, trust_dataset)
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


def _check_run_code(
    path: Path, env_config: EnvConfig, trust_model: str | None, trust_dataset: str | None
) -> None:
    """Refuse a ``--model`` or ``--dataset`` other than the run's, and model or dataset
    code whose file changed since training unless the caller trusts it by naming it.

    Raises:
        RunError: a flag names another model or dataset.
        DatasetError: dataset code changed and is not trusted.
    """
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
    # code named on the command line is trusted from now on
    trust_task_code(
        env_config.task, model=trust_model is not None, dataset=trust_dataset is not None
    )
