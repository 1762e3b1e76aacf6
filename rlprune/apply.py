"""Apply a learned policy to a model (possibly one it never saw) and deliver the pruned model.

Zero-shot: the policy runs deterministically over the new model's units. With
``adapt_episodes`` it keeps training on the new model and the best candidate
wins; with ``refine`` a local search of that many evaluations around the chosen
configuration may replace it. The chosen network is pruned for real, its BatchNorm
recalibrated, optionally fine-tuned, timed on the CPU against the original, exported so
that plain PyTorch can load it, and described in ``report.json`` / ``report.md``.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import os
import secrets
import shutil
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .env.pruning_env import PruningEnv
from .env.rollout import check_trust
from .errors import ConfigError, RunError
from .evaluation.candidates import Candidate
from .evaluation.finetune import deliver
from .evaluation.task import PruningTask
from .evaluation.timing import paired_speedups
from .files import check_output_dir, publish_dir
from .mdp.settings import EnvConfig
from .presets.loader import GENERAL_POLICY
from .presets.tasks import load_task
from .reports.apply_report import ApplyReport, unit_rows, write_report
from .reports.export import export_model
from .rl.agents import ON_POLICY
from .rl.policy import LoadedPolicy, env_config_for_policy, load_policy
from .rl.recorder import RunRecorder
from .rl.training import TrainSettings, train
from .rl.transfer import best_of_obvious, uses_prior, zero_shot
from .search.optuna_search import refine

__all__ = ["ApplySettings", "apply_policy", "default_policy"]


def default_policy() -> Path:
    """The bundled general policy's folder.

    Raises:
        ConfigError: this install carries none.
    """
    if not (GENERAL_POLICY / "policy.json").is_file():
        raise ConfigError(
            f"no bundled general policy at {GENERAL_POLICY}; pass --policy (a run folder), or "
            "make one with `python experiments/train_general_policy.py`"
        )
    return GENERAL_POLICY


@dataclass(frozen=True)
class ApplySettings:
    """How to apply a policy."""

    target: float | None = None
    """MACs target; default: the env preset's (which must then be a single value)."""
    adapt_episodes: int = 0
    refine: int = 0
    """Evaluations of a local search around the chosen configuration
    (:func:`rlprune.search.optuna_search.refine`) before it is delivered."""
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    seed: int = 0
    trust: str = "family"
    """One of :data:`rlprune.evaluation.config.TRUST_MODES`: ``family`` plays the policy's prior
    instead of its corrections on a network outside its training ranges."""
    latency_repeats: int = 20
    latency_batches: tuple[int, ...] = (1, 64)

    def __post_init__(self) -> None:
        for name in ("adapt_episodes", "refine", "finetune_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{name} must be an integer >= 0, got {value!r}")
        check_trust(self.trust)
        if not self.finetune_lr > 0:
            raise ConfigError(f"finetune_lr must be positive, got {self.finetune_lr!r}")
        if self.latency_repeats < 1 or not all(b >= 1 for b in self.latency_batches):
            raise ConfigError("latency_repeats and latency_batches must be at least 1")


def apply_policy(
    policy_path: str | Path | None,
    env_config: EnvConfig,
    settings: ApplySettings,
    out_dir: str | Path,
    *,
    on_episode: Callable[[RunRecorder], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
    on_refine: Callable[[float, Candidate], None] | None = None,
    overwrite: bool = False,
) -> ApplyReport:
    """Prune ``env_config``'s model with a saved policy; write the model and report to ``out_dir``.

    An ``out_dir`` that holds files already is refused unless ``overwrite`` (as a
    benchmark's is); then an earlier apply's files there are replaced, others kept.

    ``policy_path`` ``None`` uses the bundled general policy
    (:data:`rlprune.presets.loader.GENERAL_POLICY`).

    ``on_refine`` is told, after each batch of ``settings.refine``'s search, how many
    full evaluations it has spent (a screening evaluation counts its share) and the best
    fully evaluated configuration so far (the policy's included).

    Everything is written to a staging folder next to ``out_dir`` and moved into it at
    the end, so a failure (a full disk included) leaves no half-written output.
    """
    existed = Path(out_dir).exists()
    held = _visible_entries(Path(out_dir)) if existed else []
    if held and not overwrite:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise RunError(
            f"output folder {out_dir} already holds files ({shown}); pass --overwrite to "
            "replace an earlier apply's, or choose another --out"
        )
    out = check_output_dir(out_dir)
    _remove_stale_staging(out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        report = _apply(policy_path, env_config, settings, staging, on_episode, on_stage, on_refine)
        for name in APPLY_OUTPUTS:  # an earlier apply's files that this one may not write
            stale = out / name
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        publish_dir(staging, out)
    except BaseException:
        if not existed and not any(out.iterdir()):
            out.rmdir()  # made by the check above: leave nothing behind
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


APPLY_OUTPUTS = (
    "report.json",
    "report.md",
    "pruned_model.pt2",
    "pruned_model.pt",
    "pruned_state_dict.pt",
    "architecture.json",
    "pruned_model.onnx",
    "adapt",
)
"""What an apply may write into its output folder (``overwrite`` replaces them all)."""


def _visible_entries(folder: Path) -> list[str]:
    """The names in ``folder`` that are not hidden (a folder or a missing path: none)."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _remove_stale_staging(out: Path) -> None:
    """Remove the staging folders of earlier applies to ``out`` whose process is gone (a
    kill that left no time to clean up); a running apply's folder names its live pid."""
    for folder in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):
        pid = folder.name.rsplit(".partial-", 1)[1].split("-")[0]
        if not (pid.isdigit() and _process_alive(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs (or cannot be signalled: not ours to judge)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _apply(
    policy_path: str | Path | None,
    env_config: EnvConfig,
    settings: ApplySettings,
    out: Path,
    on_episode: Callable[[RunRecorder], None] | None,
    on_stage: Callable[[str], None] | None,
    on_refine: Callable[[float, Candidate], None] | None,
) -> ApplyReport:
    start = time.perf_counter()
    stage = on_stage or (lambda _msg: None)
    out.mkdir(parents=True)
    policy = load_policy(default_policy() if policy_path is None else policy_path)
    config = env_config_for_policy(env_config, policy, settings.target)
    stage("analysing the model")
    task = load_task(config)
    env = PruningEnv(task=task, config=config)
    stage("zero-shot episode")
    shot = zero_shot(policy, env, seed=settings.seed, trust=settings.trust)
    best = shot.candidate
    mode = "zero-shot"
    if settings.adapt_episodes > 0:
        stage(f"adapting for {settings.adapt_episodes} episodes")
        best = _adapt(policy, task, config, settings, best, out, on_episode)
        mode = "adapted"
    stage("scoring the uniform allocation" + (" and the prior" if uses_prior(config) else ""))
    best, choice, scored = best_of_obvious(task, config, best)
    improved = False
    if settings.refine > 0:
        stage(f"refining with {settings.refine} evaluations")
        refined = _refine(task, config.env.target.low, best, settings, on_refine)
        improved = refined.accuracy > best.accuracy
        if improved:
            best = refined

    stage("pruning, scoring" + (" and fine-tuning" if settings.finetune_epochs else ""))
    delivered = deliver(
        task,
        best,
        finetune_epochs=settings.finetune_epochs,
        lr=settings.finetune_lr,
        seed=settings.seed,
    )
    speed, latency_gpu = _time(task, delivered.final, settings, stage)
    budget_check = latency_budget_check(task, best.channels, speed)
    stage("exporting")
    files = export_model(delivered.final, task.example_inputs, out)
    report = ApplyReport(
        env=config.name,
        model=config.task.model,
        policy=str(policy.path),
        target=float(config.env.target.low),
        mode=mode,
        adapt_episodes=settings.adapt_episodes,
        refine_evaluations=settings.refine,
        refine_improved=improved,
        finetune_epochs=settings.finetune_epochs,
        finetune_kept=delivered.finetune_kept,
        choice=choice,
        scored=scored,
        units=unit_rows(task.analysis.units, best.channels),
        candidate=dataclasses.replace(best, accuracy=delivered.val_accuracy),
        macs_before=task.analysis.macs,
        params_before=task.analysis.params,
        val_accuracy_before=task.base_accuracy(),
        test_accuracy_before=task.split_accuracy(task.model, "test"),
        test_accuracy_after=delivered.test_accuracy,
        val_accuracy_finetuned=delivered.val_accuracy_finetuned,
        test_accuracy_finetuned=delivered.test_accuracy_finetuned,
        latency=speed,
        latency_budget=budget_check,
        threads=task.config.threads or torch.get_num_threads(),
        wall_time_s=time.perf_counter() - start,
        device=str(task.device),
        latency_gpu=latency_gpu,
        exported={k: Path(v).name for k, v in dataclasses.asdict(files).items() if v is not None},
        policy_family=list(policy.metadata.get("family") or [policy.metadata.get("env", "?")]),
        policy_ranges=bool(policy.metadata.get("feature_ranges")),
        outside_family=[
            {"feature": name, "steps": steps, "distance": round(distance, 4)}
            for name, steps, distance in shot.outside
        ],
        deferred=shot.deferred,
        prior=str(config.env.prior) if shot.deferred else "",
        correction_scale=shot.scale,
    )
    write_report(report, out)
    return report


def _adapt(
    policy: LoadedPolicy,
    task: PruningTask,
    config: EnvConfig,
    settings: ApplySettings,
    best: Candidate,
    out: Path,
    on_episode: Callable[[RunRecorder], None] | None,
) -> Candidate:
    """Keep training ``policy`` on the new network; its best candidate if it beats ``best``."""
    result = train(
        config,
        policy.agent,
        TrainSettings(
            episodes=settings.adapt_episodes,
            seed=settings.seed,
            checkpoint_every=0,
            # with K workers, K episodes end together and are scored in parallel
            n_envs=task.service.workers if policy.agent.algo in ON_POLICY else 1,
        ),
        run_dir=out / "adapt",
        task=task,
        initial_policy=policy,
        on_episode=on_episode,
    )
    if result.interrupted:  # Ctrl-C inside training: stop here too
        raise KeyboardInterrupt
    if result.best is not None and result.best.candidate.accuracy > best.accuracy:
        return task.evaluate(result.best.candidate.channels)
    return best


def _refine(
    task: PruningTask,
    target: float,
    start: Candidate,
    settings: ApplySettings,
    on_refine: Callable[[float, Candidate], None] | None,
) -> Candidate:
    """The best candidate of a local search of ``settings.refine`` evaluations around
    ``start`` (screening scores are charged a share of an evaluation and never lead)."""

    def scored(so_far: Sequence[Candidate]) -> None:
        if on_refine is not None:
            full = [c for c in so_far if c.fidelity >= 1.0]
            leader = max([start, *full], key=lambda c: c.accuracy)
            on_refine(sum(c.fidelity for c in so_far), leader)

    return refine(task, target, start, settings.refine, settings.seed, on_scored=scored).best


def _time(
    task: PruningTask, final: nn.Module, settings: ApplySettings, stage: Callable[[str], None]
) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]] | None]:
    """Original against pruned latency on the CPU, and on the task's GPU when it has one:
    interleaved passes, ``{batch: {before_ms, after_ms, speedup, p10, p90}}``."""
    stage("timing on the CPU")
    batches = tuple(dict.fromkeys((*settings.latency_batches, task.config.latency_batch)))
    shape = task.data.input_shape
    speed = paired_speedups(
        task.model,
        final,
        shape,
        batches,
        settings.latency_repeats,
        threads=task.config.threads,
    )
    on_cpu = {b: s.as_dict() for b, s in speed.items()}
    if task.device.type != "cuda":
        return on_cpu, None
    stage(f"timing on {task.device}")
    on_gpu = paired_speedups(
        task.on_device(task.model),
        copy.deepcopy(final).to(task.device),
        shape,
        batches,
        settings.latency_repeats,
        device=task.device,
    )
    return on_cpu, {b: s.as_dict() for b, s in on_gpu.items()}


def latency_budget_check(
    task: PruningTask, channels: Sequence[int], timed: Mapping[int, Mapping[str, float]]
) -> dict[str, Any] | None:
    """Under a latency budget: the predicted speedup of ``channels`` against the one
    measured on the budget's device at its batch size, and whether they agree within the
    latency model's stated error (its 90th-percentile held-out error); warns when not."""
    latency = task.latency
    if latency is None:
        return None
    where = timed.get(latency.key.batch)
    if where is None:
        return None
    predicted = 1.0 / task.budget_ratio(channels)
    measured = float(where["speedup"])
    bound = max(latency.error_p90, 0.05)
    agrees = abs(measured / predicted - 1.0) <= bound
    if not agrees:
        warnings.warn(
            f"measured speedup {measured:.2f}× at batch {latency.key.batch} differs from the "
            f"latency model's {predicted:.2f}× by more than its stated error ({bound:.0%}): "
            "the machine may be busy, or the model is off for this network; rebuild it on an "
            "idle machine (delete the cache) or use --threads 1",
            stacklevel=2,
        )
    return {
        "device": latency.key.device,
        "batch": latency.key.batch,
        "threads": latency.key.threads,
        "torch": latency.key.torch,
        "predicted_speedup": predicted,
        "measured_speedup": measured,
        "stated_error": bound,
        "agrees": agrees,
        "round_to": task.config.round_to,
        "model_seconds": latency.seconds,
    }
