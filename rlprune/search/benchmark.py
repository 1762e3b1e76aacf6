"""Benchmark search methods at equal cost: agents, random search and heuristics.

Every method gets the same budget of ``evals`` candidate evaluations on the
same task (model, data splits, BatchNorm calibration batches, MACs target).
For each (method, seed) the best candidate by validation accuracy is then
scored on the test split, optionally fine-tuned (the same way for every
method), and timed on the CPU. Finished (method, seed) results are saved as
they complete, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.candidates import Candidate, SearchResult, best_of
from ..core.config import EnvConfig
from ..core.finetune import deliver
from ..core.task import PruningTask
from ..env.pruning_env import PruningEnv
from ..env.rollout import rollout
from ..errors import ConfigError, RunError
from ..files import atomic_write_json, atomic_write_text
from ..presets.tasks import load_task as load_preset_task
from ..reports.latency import compare_latency
from ..reports.plots import plot_all
from ..reports.tables import MethodSeedResult, comparison_lines, summarise, write_tables
from ..rl.agents import load_agent_config
from ..rl.policy import env_config_for_policy, load_policy
from ..rl.training import TrainSettings, train
from .baselines import get_baseline
from .methods import METHODS, TRANSFER_METHODS, valid_methods

__all__ = [
    "MANIFEST",
    "BenchmarkSettings",
    "load_task",
    "prepare_out_dir",
    "run_benchmark",
]

MANIFEST = "benchmark.json"


@dataclass(frozen=True)
class BenchmarkSettings:
    """What to compare, and at what cost."""

    methods: tuple[str, ...]
    evals: int
    seeds: int = 1
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    policy: str | None = None
    """A policy trained elsewhere, for the ``transfer`` methods."""
    adapt_episodes: int = 0
    """Extra episodes for ``transfer-adapt`` (its cost: 1 + adapt_episodes evaluations)."""
    latency_repeats: int = 10

    def check(self, task: PruningTask) -> None:
        """Raise :class:`ConfigError` for settings that cannot run on ``task``."""
        unknown = [m for m in self.methods if m not in valid_methods()]
        if unknown:
            raise ConfigError(
                f"unknown method {unknown[0]!r}; valid methods: {', '.join(valid_methods())}"
            )
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("a method is listed twice in --methods; list each once")
        if self.seeds <= 0:
            raise ConfigError(f"--seeds must be a positive count, got {self.seeds}")
        if self.evals <= 0:
            raise ConfigError(f"--evals must be positive, got {self.evals}")
        for method in self.methods:
            if METHODS[method].kind == "baseline":
                needed = get_baseline(method).min_evals(task)
                if self.evals < needed:
                    raise ConfigError(
                        f"method {method!r} needs at least {needed} evaluations for this "
                        f"network, got --evals {self.evals}; raise --evals"
                    )
        if any(m in TRANSFER_METHODS for m in self.methods):
            if self.policy is None:
                raise ConfigError("the transfer methods need --policy PATH (a trained policy)")
            if "transfer-adapt" in self.methods and not 0 < self.adapt_episodes < self.evals:
                raise ConfigError(
                    f"transfer-adapt needs 0 < --adapt-episodes < --evals ({self.evals}), "
                    f"got {self.adapt_episodes}"
                )


def _search_agent(
    method: str, task: PruningTask, target: float, evals: int, seed: int, runs: Path
) -> SearchResult:
    start = time.perf_counter()
    config = dataclasses.replace(task.config, target=target)
    result = train(
        config,
        load_agent_config(method, config.name),
        TrainSettings(episodes=evals, seed=seed, checkpoint_every=0),
        run_dir=runs / f"{method}__{seed}",
        task=task,
    )
    if result.interrupted:  # Ctrl-C inside training: stop here too
        raise KeyboardInterrupt
    history = tuple(result.history)
    return SearchResult(
        method, best_of(history, target), history, len(history), time.perf_counter() - start, target
    )


def _search_transfer(
    method: str, task: PruningTask, settings: BenchmarkSettings, seed: int, runs: Path
) -> SearchResult:
    start = time.perf_counter()
    assert settings.policy is not None
    policy = load_policy(settings.policy)
    env = PruningEnv(task=task)
    history = [rollout(policy, env, seed=seed)]
    if method == "transfer-adapt":
        result = train(
            task.config,
            policy.agent,
            TrainSettings(episodes=settings.adapt_episodes, seed=seed, checkpoint_every=0),
            run_dir=runs / f"{method}__{seed}",
            task=task,
            initial_policy=policy,
        )
        if result.interrupted:  # Ctrl-C inside training: stop here too
            raise KeyboardInterrupt
        history += result.history
    return SearchResult(
        method,
        best_of(history, task.config.target_range[0]),
        tuple(history),
        len(history),
        time.perf_counter() - start,
        task.config.target_range[0],
    )


def _finish(
    task: PruningTask,
    search: SearchResult,
    seed: int,
    settings: BenchmarkSettings,
) -> MethodSeedResult:
    """Score the best candidate on test, fine-tune it, time it."""
    best = search.best
    delivered = deliver(
        task, best, finetune_epochs=settings.finetune_epochs, lr=settings.finetune_lr, seed=seed
    )
    speed = compare_latency(
        task.model,
        delivered.final,
        task.data.input_shape,
        batch_sizes=(64,),
        repeats=settings.latency_repeats,
    )[64]
    return MethodSeedResult(
        method=search.method,
        seed=seed,
        evaluations=search.evaluations,
        best=best,
        test_accuracy=delivered.test_accuracy,
        test_accuracy_finetuned=delivered.test_accuracy_finetuned,
        latency_speedup=speed.speedup,
        wall_time_s=search.seconds,
        units=tuple(u.name for u in task.analysis.units),
    )


def _candidate_dicts(history: Sequence[Candidate]) -> list[dict[str, Any]]:
    return [c.to_dict() for c in history]


def _load_finished(path: Path, target: float) -> tuple[MethodSeedResult, SearchResult]:
    raw = json.loads(path.read_text())
    history = tuple(Candidate.from_dict(c) for c in raw["history"])
    result = MethodSeedResult.from_dict(raw["result"])
    search = SearchResult(
        method=result.method,
        best=best_of(history, target),
        history=history,
        evaluations=result.evaluations,
        seconds=result.wall_time_s,
        target=target,
    )
    return result, search


def prepare_out_dir(out: Path, manifest: dict[str, Any], *, overwrite: bool, resume: bool) -> None:
    """Refuse to mix results: an existing benchmark needs ``overwrite`` or a matching ``resume``."""
    existing = out / MANIFEST
    if existing.is_file():
        if overwrite:
            for path in (out / "results").glob("*.json"):
                path.unlink()
        elif resume:
            previous = json.loads(existing.read_text())
            if previous != manifest:
                raise RunError(
                    f"{out} holds a benchmark with other settings; --resume needs the same "
                    "command (or use --overwrite, or another --out)"
                )
        else:
            raise RunError(
                f"{out} already holds a benchmark; pass --resume to finish it, --overwrite to "
                "replace it, or choose another --out"
            )
    elif resume:
        raise RunError(f"{out} holds no benchmark to resume; drop --resume")
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        atomic_write_json(existing, manifest)


def run_benchmark(
    task: PruningTask,
    settings: BenchmarkSettings,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    on_result: Callable[[MethodSeedResult, int, int], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
) -> tuple[list[MethodSeedResult], dict[str, Path]]:
    """Run every (method, seed), write tables and plots into ``out``; return results and files."""
    out = Path(out)
    settings.check(task)
    target = task.config.target_range[0]
    manifest = {
        "env": dataclasses.asdict(task.config),
        "settings": dataclasses.asdict(settings),
    }
    prepare_out_dir(
        out, json.loads(json.dumps(manifest, default=list)), overwrite=overwrite, resume=resume
    )
    results: list[MethodSeedResult] = []
    histories: dict[str, list[SearchResult]] = {}
    jobs = [(m, s) for m in settings.methods for s in range(settings.seeds)]
    for done, (method, seed) in enumerate(jobs, start=1):
        path = out / "results" / f"{method}__{seed}.json"
        first = out / "results" / f"{method}__0.json"
        kind = METHODS[method].kind
        deterministic = kind == "baseline" and not get_baseline(method).seeded
        if path.is_file():
            result, search = _load_finished(path, target)
        elif deterministic and seed > 0 and first.is_file():
            # a deterministic method gives every seed the same result: computed once
            result, search = _load_finished(first, target)
            result = dataclasses.replace(result, seed=seed)
            atomic_write_json(
                path, {"result": result.to_dict(), "history": _candidate_dicts(search.history)}
            )
        else:
            if on_start is not None:
                on_start(method, seed)
            task.cache.clear()  # every (method, seed) pays for its own evaluations
            if kind == "agent":
                search = _search_agent(method, task, target, settings.evals, seed, out / "runs")
            elif kind == "transfer":
                search = _search_transfer(method, task, settings, seed, out / "runs")
            else:
                search = get_baseline(method).search(task, target, settings.evals, seed)
            result = _finish(task, search, seed, settings)
            atomic_write_json(
                path, {"result": result.to_dict(), "history": _candidate_dicts(search.history)}
            )
        results.append(result)
        histories.setdefault(method, []).append(search)
        if on_result is not None:
            on_result(result, done, len(jobs))
    notes = [
        f"env {task.config.name}: {task.config.model} on {task.config.dataset}, "
        f"MACs target {target}, {len(task.analysis.units)} prunable units",
        f"budget: {settings.evals} candidate evaluations per method and seed "
        "(validation accuracy after BatchNorm recalibration, no fine-tuning)",
        "test accuracy is measured once per method and seed on the best candidate; "
        "the test split never drives a search decision",
    ]
    fixed = [
        m for m in settings.methods if METHODS[m].kind == "baseline" and not get_baseline(m).seeded
    ]
    if fixed and settings.seeds > 1:
        notes.append(
            f"{', '.join(fixed)}: deterministic, computed once and repeated for every seed "
            "(std 0 by construction)"
        )
    if settings.finetune_epochs:
        notes.append(
            f"fine-tuned: {settings.finetune_epochs} epochs, same schedule for every method"
        )
    reference = "ppo" if "ppo" in settings.methods else settings.methods[0]
    comparison = comparison_lines(summarise(results), reference=reference)
    files = write_tables(
        results, out, title=f"Benchmark: {task.config.name}", notes=[*notes, *comparison]
    )
    files.update(plot_all(histories, results, out, target=target))
    files["comparison.md"] = atomic_write_text(
        out / "comparison.md", "".join(f"- {line}\n" for line in comparison)
    )
    return results, files


def load_task(env_config: EnvConfig, policy: str | None) -> PruningTask:
    """The task a benchmark runs on (with a transfer policy's action bounds, if one is given)."""
    if policy is not None:
        env_config = env_config_for_policy(env_config, load_policy(policy), None)
    return load_preset_task(env_config)
