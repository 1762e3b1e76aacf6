"""Apply a learned policy to a model (possibly one it never saw) and deliver the pruned model.

Zero-shot: the policy runs deterministically over the new model's units. With
``adapt_episodes`` it keeps training on the new model and the best candidate
wins. The chosen network is pruned for real, its BatchNorm recalibrated,
optionally fine-tuned, timed on the CPU against the original, exported so that
plain PyTorch can load it, and described in ``report.json`` / ``report.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from .config import EnvConfig, make_config
from .env import PruningEnv
from .errors import ConfigError
from .evaluate import accuracy, calibrate_batchnorm
from .export import export_model
from .latency import compare_latency
from .policy import LoadedPolicy, load_policy
from .pretrain import train_classifier
from .report import ApplyReport, unit_rows, write_report
from .task import Candidate, PruningTask
from .train import RunRecorder, TrainSettings, train


@dataclass(frozen=True)
class ApplySettings:
    """How to apply a policy."""

    target: float | None = None
    """MACs target; default: the env preset's (which must then be a single value)."""
    adapt_episodes: int = 0
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    seed: int = 0
    latency_repeats: int = 20
    latency_batches: tuple[int, ...] = (1, 64)


@dataclass(frozen=True)
class Delivered:
    """A chosen candidate, pruned for real and scored (and optionally fine-tuned)."""

    final: nn.Module
    """The model to ship: fine-tuned if fine-tuning ran, else pruned and recalibrated."""
    val_accuracy: float
    test_accuracy: float
    val_accuracy_finetuned: float | None
    test_accuracy_finetuned: float | None


def deliver(
    task: PruningTask, candidate: Candidate, *, finetune_epochs: int, lr: float, seed: int
) -> Delivered:
    """Prune ``candidate`` for real, recalibrate BatchNorm, score on val and test, and
    fine-tune on the training split for ``finetune_epochs`` (the same way for every method)."""
    pruned = task.prune(candidate.channels).model
    calibrate_batchnorm(pruned, task.evaluator.calibration_batches)
    val_acc = accuracy(pruned, *task.data.val.tensors)
    test_acc = accuracy(pruned, *task.data.test.tensors)
    if finetune_epochs <= 0:
        return Delivered(pruned, val_acc, test_acc, None, None)
    tuned_model = copy.deepcopy(pruned)
    tuned = train_classifier(
        tuned_model,
        task.data,
        epochs=finetune_epochs,
        lr=lr,
        batch_size=task.config.batch_size,
        seed=seed,
    )
    return Delivered(tuned_model, val_acc, test_acc, tuned.val_accuracy, tuned.test_accuracy)


def rollout(policy: LoadedPolicy | object, env: PruningEnv, seed: int = 0) -> Candidate:
    """Run ``policy`` deterministically for one episode; return the evaluated candidate.

    ``policy`` is anything with ``predict(obs, deterministic=True)`` (a
    :class:`~rlprune.policy.LoadedPolicy`, an SB3 algorithm, a baseline).
    """
    obs, _ = env.reset(seed=seed)
    done = False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)  # type: ignore[attr-defined]
        obs, _, done, _, _ = env.step(np.asarray(action, dtype=np.float32).reshape(1))
    assert env.last_candidate is not None
    return env.last_candidate


def env_config_for_policy(
    env_config: EnvConfig, policy: LoadedPolicy, target: float | None
) -> EnvConfig:
    """The env config with the policy's action bounds and reward, and one fixed target."""
    if target is None:
        low, high = env_config.target_range
        if low != high:
            raise ConfigError(
                f"env {env_config.name!r} has a target range [{low}, {high}]; choose one with --target"
            )
        target = low
    meta = policy.metadata
    return make_config(
        {
            **dataclasses.asdict(env_config),
            "target": target,
            "min_keep": meta.get("min_keep", env_config.min_keep),
            "max_keep": meta.get("max_keep", env_config.max_keep),
            "reward": meta.get("reward", env_config.reward),
        }
    )


def apply_policy(
    policy_path: str | Path,
    env_config: EnvConfig,
    settings: ApplySettings,
    out_dir: str | Path,
    *,
    on_episode: Callable[[RunRecorder], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> ApplyReport:
    """Prune ``env_config``'s model with a saved policy; write the model and report to ``out_dir``."""
    start = time.perf_counter()
    stage = on_stage or (lambda _msg: None)
    out = Path(out_dir)
    policy = load_policy(policy_path)
    config = env_config_for_policy(env_config, policy, settings.target)
    stage("analysing the model")
    task = PruningTask.from_config(config)
    env = PruningEnv(task=task)
    stage("zero-shot episode")
    best = rollout(policy, env, seed=settings.seed)
    mode = "zero-shot"
    if settings.adapt_episodes > 0:
        stage(f"adapting for {settings.adapt_episodes} episodes")
        result = train(
            config,
            policy.agent,
            TrainSettings(episodes=settings.adapt_episodes, seed=settings.seed, checkpoint_every=0),
            run_dir=out / "adapt",
            task=task,
            initial_policy=policy,
            on_episode=on_episode,
        )
        if result.interrupted:  # Ctrl-C inside training: stop here too
            raise KeyboardInterrupt
        if result.best is not None and result.best.accuracy > best.accuracy:
            best = task.evaluate(result.best.channels)
        mode = "adapted"

    stage("pruning, scoring" + (" and fine-tuning" if settings.finetune_epochs else ""))
    delivered = deliver(
        task,
        best,
        finetune_epochs=settings.finetune_epochs,
        lr=settings.finetune_lr,
        seed=settings.seed,
    )
    final = delivered.final
    val_x, val_y = task.data.val.tensors
    test_x, test_y = task.data.test.tensors
    stage("timing on the CPU")
    speed = compare_latency(
        task.model,
        final,
        task.data.input_shape,
        batch_sizes=settings.latency_batches,
        repeats=settings.latency_repeats,
    )
    stage("exporting")
    files = export_model(final, task.example_inputs, out)
    report = ApplyReport(
        env=config.name,
        model=config.model,
        policy=str(policy.path),
        target=float(config.target_range[0]),
        mode=mode,
        adapt_episodes=settings.adapt_episodes,
        finetune_epochs=settings.finetune_epochs,
        units=unit_rows(task.analysis.units, best.channels),
        macs_before=task.analysis.macs,
        macs_after=best.macs,
        macs_ratio=best.macs_ratio,
        params_before=task.analysis.params,
        params_after=best.params,
        params_ratio=best.params_ratio,
        val_accuracy_before=accuracy(task.model, val_x, val_y),
        val_accuracy_after=delivered.val_accuracy,
        test_accuracy_before=accuracy(task.model, test_x, test_y),
        test_accuracy_after=delivered.test_accuracy,
        val_accuracy_finetuned=delivered.val_accuracy_finetuned,
        test_accuracy_finetuned=delivered.test_accuracy_finetuned,
        latency={
            b: {
                "before_ms": s.before.median_ms,
                "after_ms": s.after.median_ms,
                "speedup": s.speedup,
            }
            for b, s in speed.items()
        },
        wall_time_s=time.perf_counter() - start,
        exported={k: Path(v).name for k, v in dataclasses.asdict(files).items() if v is not None},
    )
    write_report(report, out)
    return report
