"""Benchmark search methods at equal cost: agents, random search and heuristics.

Every method gets the same budget of ``evals`` candidate evaluations on the
same task (model, data splits, BatchNorm calibration batches, MACs target).
For each (method, seed) the best candidate by validation accuracy is then
scored on the test split, optionally fine-tuned (the same way for every
method), and timed on the CPU. Finished (method, seed) results are saved as
they complete, so an interrupted benchmark resumes where it stopped; a (method, seed)
job cut short runs again from its start, in a clean run folder.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..env.rollout import check_trust
from ..errors import ConfigError, RunError
from ..evaluation.candidates import Candidate, SearchResult, best_of, within_budget
from ..evaluation.finetune import deliver
from ..evaluation.latency import grid_words
from ..evaluation.task import PruningTask
from ..evaluation.timing import paired_speedups
from ..files import atomic_write_json, atomic_write_text, file_digest, resolve_cached
from ..mdp.settings import EnvConfig
from ..presets.tasks import load_task as load_preset_task
from ..reports.plots import plot_all
from ..reports.tables import MethodSeedResult, comparison_lines, summarise, write_tables
from ..rl.policy import env_config_for_policy, load_policy, policy_digest
from .base import SearchMethod, SearchOptions
from .methods import METHODS, RECOMMENDED, TRANSFER_METHODS, get_method

__all__ = [
    "MANIFEST",
    "BenchmarkSettings",
    "load_task",
    "manifest_settings",
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
    finetune_images: int | None = None
    """Fine-tune on at most this many training images (one short pass ranks candidates)."""
    proxy_candidates: int = 0
    """Fine-tune this many evaluated candidates, spread over the validation-accuracy range,
    and report the Spearman correlation of search-time validation accuracy with test
    accuracy after fine-tuning (how far the search's proxy can be trusted)."""
    policy: str | None = None
    """A policy trained elsewhere, for the ``transfer`` methods."""
    adapt_episodes: int = 0
    """Extra episodes for ``transfer-adapt``, extra evaluations for ``transfer-refine`` (the
    cost of either: the policy's probes + 1 + adapt_episodes evaluations)."""
    trust: str = "family"
    """The transfer methods' zero-shot episode, as ``rlprune apply --trust`` plays it
    (:func:`rlprune.rl.transfer.zero_shot`)."""
    latency_repeats: int = 10

    def check(self, task: PruningTask) -> None:
        """Raise :class:`ConfigError` for settings that cannot run on ``task``."""
        for method in self.methods:
            get_method(method)
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError("a method is listed twice in --methods; list each once")
        if self.seeds <= 0:
            raise ConfigError(f"--seeds must be a positive count, got {self.seeds}")
        check_trust(self.trust)
        if self.evals <= 0:
            raise ConfigError(f"--evals must be positive, got {self.evals}")
        if self.finetune_images is not None and self.finetune_images < 1:
            raise ConfigError(f"--finetune-images must be positive, got {self.finetune_images}")
        if self.proxy_candidates and self.proxy_candidates < 3:
            raise ConfigError(
                f"--proxy-candidates needs at least 3 candidates, got {self.proxy_candidates}"
            )
        for method in self.methods:
            needed = METHODS[method].min_evals(task)
            if self.evals < needed:
                raise ConfigError(
                    f"method {method!r} needs at least {needed} evaluations for this "
                    f"network, got --evals {self.evals}; raise --evals"
                )
        options = self.search_options()
        for spec in METHODS.values():  # in the registry's order, whatever --methods says
            if spec.name in self.methods:
                spec.check_options(options, self.evals)

    def search_options(
        self, config: EnvConfig | None = None, runs: Path = Path("runs")
    ) -> SearchOptions:
        """What every method's search may read from these settings, with the preset
        ``config`` the task was loaded for; agents' run folders go in ``runs``."""
        return SearchOptions(
            config=config,
            runs=runs,
            policy=self.policy,
            adapt_episodes=self.adapt_episodes,
            trust=self.trust,
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
        task,
        best,
        finetune_epochs=settings.finetune_epochs,
        lr=settings.finetune_lr,
        seed=seed,
        finetune_images=settings.finetune_images,
    )
    speed = paired_speedups(
        task.model,
        delivered.final,
        task.data.input_shape,
        (1, 64),
        repeats=settings.latency_repeats,
        threads=task.config.threads,
    )
    return MethodSeedResult(
        method=search.method,
        seed=seed,
        evaluations=search.evaluations,
        best=best,
        test_accuracy=delivered.test_accuracy,
        test_accuracy_finetuned=delivered.test_accuracy_finetuned,
        latency_speedup=speed[64].speedup,
        speedup_b1=speed[1].speedup,
        speedup_spread={str(b): [s.p10, s.p90] for b, s in speed.items()},
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


SETTINGS_BEFORE: dict[str, Any] = {"trust": "always"}
"""Benchmark settings added since a kept benchmark may have begun, at the value that
reproduces what it ran (its transfer methods played the policy everywhere)."""


def manifest_settings(settings: BenchmarkSettings) -> dict[str, Any]:
    """The settings a benchmark records (``--resume`` compares them): ``trust`` only where
    a transfer method plays it."""
    recorded = dataclasses.asdict(settings)
    if not any(m in TRANSFER_METHODS for m in settings.methods):
        del recorded["trust"]
    if settings.policy is not None:
        recorded["policy_digest"] = policy_digest(settings.policy)
    return recorded


def _same_policy(previous: dict[str, Any], now: dict[str, Any]) -> None:
    """Compare policies by content, not path: a kept benchmark whose policy folder moved
    (another checkout) resumes when the policy is the same. Edits ``previous`` in place."""
    before = previous.get("settings", {})
    if before.get("policy") is None or now.get("policy") is None:
        return
    digest = before.get("policy_digest")
    if digest is None and Path(before["policy"]).exists():
        digest = policy_digest(before["policy"])
    if digest is not None and digest == now.get("policy_digest"):
        before["policy"], before["policy_digest"] = now["policy"], digest


def _more_seeds(previous: dict[str, Any], manifest: dict[str, Any]) -> bool:
    """Whether ``manifest`` is ``previous`` with more seeds: each (method, seed) runs alone
    from its own seed, so the kept seeds' results stand beside the new ones'."""
    before, now = previous.get("settings", {}), manifest["settings"]
    same = {**previous, "settings": {**before, "seeds": now.get("seeds")}} == manifest
    return same and int(now.get("seeds", 1)) > int(before.get("seeds", 1))


def _differences(previous: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The settings two manifests disagree on, named, e.g. ``settings.evals 50 -> 100``."""
    changed = []
    for part in ("env", "settings"):
        before, now = previous.get(part, {}), manifest.get(part, {})
        for key in sorted(set(before) | set(now)):
            if before.get(key) != now.get(key):
                changed.append(f"{part}.{key} {before.get(key)!r} -> {now.get(key)!r}")
    return "; ".join(changed[:3]) + (f"; {len(changed) - 3} more" if len(changed) > 3 else "")


def _check_workers(out: Path, previous: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Refuse to resume with another ``--workers``: a search that asks several trials at
    once proposes other candidates with another count, so the results would be mixed."""
    if previous.get("workers") != manifest.get("workers"):
        raise RunError(
            f"--workers {manifest.get('workers')} differs from the {previous.get('workers')} "
            f"the benchmark in {out} ran with; resume it with --workers "
            f"{previous.get('workers')} (or use --overwrite, or another --out)"
        )


def _check_weights(out: Path, previous: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Refuse to resume on other base-model weights (a retrained network): its kept
    results belong to the weights they were scored on. A benchmark kept before digests
    were recorded is taken as this command's."""
    before, now = previous.get("weights_digest"), manifest.get("weights_digest")
    if before is not None and now is not None and before != now:
        raise RunError(
            f"the base model's weights ({manifest['env'].get('weights')}) differ from those "
            f"the benchmark in {out} was scored on (sha256 {before} -> {now}); restore those "
            "weights, or use --overwrite (or another --out)"
        )
    if now is not None:
        previous["weights_digest"] = now
    else:
        previous.pop("weights_digest", None)


def prepare_out_dir(out: Path, manifest: dict[str, Any], *, overwrite: bool, resume: bool) -> None:
    """Refuse to mix results: an existing benchmark needs ``overwrite`` or a matching ``resume``."""
    existing = out / MANIFEST
    if existing.is_file():
        if overwrite:
            for path in (out / "results").glob("*.json"):
                path.unlink()
            # agents' run folders too: a new run must not append to an old episodes.csv
            shutil.rmtree(out / "runs", ignore_errors=True)
        elif resume:
            previous = json.loads(existing.read_text())
            previous.pop("threads", None)  # a resume may use other threads
            if "threads" in manifest:
                previous["threads"] = manifest["threads"]
            # settings added to EnvConfig since that benchmark began count at their defaults
            defaults = json.loads(json.dumps(EnvConfig().to_dict(), default=list))
            previous["env"] = {**defaults, **previous.get("env", {})}
            before = {k: v for k, v in SETTINGS_BEFORE.items() if k in manifest["settings"]}
            previous["settings"] = {**before, **previous.get("settings", {})}
            if "workers" in manifest:  # not recorded before: taken as this command's
                previous.setdefault("workers", manifest["workers"])
            _check_workers(out, previous, manifest)
            _check_weights(out, previous, manifest)
            _same_policy(previous, manifest["settings"])
            grown = _more_seeds(previous, manifest)
            if previous != manifest and not grown:
                raise RunError(
                    f"{out} holds a benchmark with other settings ({_differences(previous, manifest)}); "
                    "--resume needs the same command, or only more --seeds (or use --overwrite, "
                    "or another --out)"
                )
            # the kept results stand; the manifest names this command (its seeds, where
            # its policy now lies)
            atomic_write_json(existing, manifest)
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
    config: EnvConfig,
    overwrite: bool = False,
    resume: bool = False,
    on_result: Callable[[MethodSeedResult, int, int], None] | None = None,
    on_start: Callable[[str, int], None] | None = None,
) -> tuple[list[MethodSeedResult], dict[str, Path]]:
    """Run every (method, seed) on ``task`` at ``config``'s target (the preset the task was
    loaded for, :func:`benchmark_config`), write tables and plots into ``out``; return
    results and files."""
    out = Path(out)
    settings.check(task)
    target = config.env.target.low
    # K workers ask K trials of a sequential search at once (TPE): part of the settings
    manifest = {
        "env": config.to_dict(),
        "settings": manifest_settings(settings),
        "workers": task.service.workers,
        # recorded, not compared: threads change the wall time, not the results
        "threads": torch.get_num_threads(),
    }
    weights = resolve_cached(config.task.weights) if config.task.weights else None
    if weights is not None and Path(weights).is_file():
        # retrained weights are another network (training is not bit-reproducible across
        # machines): a resume must not mix results of the two
        manifest["weights_digest"] = file_digest(weights)
    prepare_out_dir(
        out, json.loads(json.dumps(manifest, default=list)), overwrite=overwrite, resume=resume
    )
    results: list[MethodSeedResult] = []
    histories: dict[str, list[SearchResult]] = {}
    jobs = [(m, s) for m in settings.methods for s in range(settings.seeds)]
    options = settings.search_options(config, out / "runs")
    for done, (method, seed) in enumerate(jobs, start=1):
        result, search = _run_job(
            task, settings, METHODS[method], seed, target, options, out, on_start
        )
        results.append(result)
        histories.setdefault(method, []).append(search)
        if on_result is not None:
            on_result(result, done, len(jobs))
    notes = _notes(task, settings, target)
    if settings.proxy_candidates:
        notes.append(_proxy_note(task, histories, settings, target, out, resume=resume))
    return results, _write_report(task, settings, results, histories, target, out, notes)


def _run_job(
    task: PruningTask,
    settings: BenchmarkSettings,
    method: SearchMethod,
    seed: int,
    target: float,
    options: SearchOptions,
    out: Path,
    on_start: Callable[[str, int], None] | None,
) -> tuple[MethodSeedResult, SearchResult]:
    """One (method, seed): its saved result, or a deterministic method's first seed
    again, or a search now; saved as it finishes."""
    path = out / "results" / f"{method.name}__{seed}.json"
    first = out / "results" / f"{method.name}__0.json"
    if path.is_file():
        return _load_finished(path, target)
    if not method.seeded and seed > 0 and first.is_file():
        # a deterministic method's search gives every seed the same best: searched
        # once. Its fine-tune is seeded like every other method's (data order), so
        # the fine-tuned mean averages the same number of fine-tunes for all methods.
        result, search = _load_finished(first, target)
        if settings.finetune_epochs:
            result = _finish(task, search, seed, settings)
        else:
            result = dataclasses.replace(result, seed=seed)
    else:
        if on_start is not None:
            on_start(method.name, seed)
        task.reset_search()  # every (method, seed) pays for its own evaluations
        search = method.search(task, target, settings.evals, seed, options)
        result = _finish(task, search, seed, settings)
    atomic_write_json(
        path, {"result": result.to_dict(), "history": _candidate_dicts(search.history)}
    )
    return result, search


def latency_note(task: PruningTask) -> str:
    """What the latency budget was measured on: device, batch, threads, torch, the model."""
    latency = task.latency
    assert latency is not None
    key = latency.key
    return (
        f"latency budget: predicted by a latency model of {key.device}, batch {key.batch}, "
        f"{key.threads} torch thread(s), torch {key.torch} (original {latency.full_ms:.2f} "
        f"ms; stated error {latency.error:.1%}; {grid_words(latency)}; round_to "
        f"{task.config.round_to}); speedups timed with the same threads"
    )


def _scoring_words(task: PruningTask) -> str:
    """Where candidates were scored and with how many torch threads."""
    here = f"{torch.get_num_threads()} torch thread(s) in this process"
    service = task.service
    if service.workers <= 1 and service.name == "local":
        return f"in-process, {here}"
    per_worker = getattr(service, "threads", 1)
    return f"{service.workers} {service.name} worker(s) of {per_worker} torch thread(s), {here}"


def _notes(task: PruningTask, settings: BenchmarkSettings, target: float) -> list[str]:
    """The report's notes: the task, the budget, the test split's use, what repeats."""
    notes = [
        f"env {task.config.name}: {task.config.model} on {task.config.dataset}, "
        f"{'MACs' if task.config.metric == 'macs' else 'latency'} target {target}, "
        f"{len(task.analysis.units)} prunable units",
        f"budget: {settings.evals} full evaluations per method and seed (one = "
        f"{task.val_size} validation images after BatchNorm recalibration, no fine-tuning; "
        "a low-fidelity probe on k images costs k / "
        f"{task.val_size}; cost is the sum over every request, cached or not)",
        "test accuracy is measured once per method and seed on the best candidate; "
        "the test split never drives a search decision",
        f"scoring: {_scoring_words(task)}; latency timed with "
        f"{task.config.threads or torch.get_num_threads()} torch thread(s)",
    ]
    if task.latency is not None:
        notes.append(latency_note(task))
    fixed = [m for m in settings.methods if not METHODS[m].seeded]
    if fixed and settings.seeds > 1:
        notes.append(
            f"{', '.join(fixed)}: deterministic, computed once and repeated for every seed "
            "(std 0 by construction)"
        )
    if settings.finetune_epochs:
        limit = f" (at most {settings.finetune_images} images)" if settings.finetune_images else ""
        notes.append(
            f"fine-tuned: {settings.finetune_epochs} epochs{limit}, same schedule for every method"
        )
    return notes


def _proxy_note(
    task: PruningTask,
    histories: dict[str, list[SearchResult]],
    settings: BenchmarkSettings,
    target: float,
    out: Path,
    *,
    resume: bool,
) -> str:
    """The proxy correlation's note, computed (or, resuming, read back) and kept."""
    kept = out / "proxy.json"
    if resume and kept.is_file():  # fine-tuning 20 candidates again would repeat it
        proxy = json.loads(kept.read_text())
    else:
        proxy = proxy_correlation(task, histories, settings, target)
        atomic_write_json(kept, proxy)
    return (
        f"proxy: Spearman rho = {proxy['spearman']:.2f} between search-time validation "
        f"accuracy and test accuracy after the same fine-tuning, over {proxy['n']} "
        "evaluated candidates spread over the validation-accuracy range"
    )


def _write_report(
    task: PruningTask,
    settings: BenchmarkSettings,
    results: list[MethodSeedResult],
    histories: dict[str, list[SearchResult]],
    target: float,
    out: Path,
    notes: list[str],
) -> dict[str, Path]:
    """Tables, plots and the comparison with the recommended agent (or the first method)."""
    reference = RECOMMENDED if RECOMMENDED in settings.methods else settings.methods[0]
    comparison = comparison_lines(summarise(results), reference=reference)
    files = write_tables(
        results, out, title=f"Benchmark: {task.config.name}", notes=[*notes, *comparison]
    )
    try:
        files.update(plot_all(histories, results, out, target=target))
    except ModuleNotFoundError as missing:  # the tables are the result; the plots illustrate
        warnings.warn(f"{missing}; tables written, plots skipped", stacklevel=3)
    files["comparison.md"] = atomic_write_text(
        out / "comparison.md", "".join(f"- {line}\n" for line in comparison)
    )
    return files


def proxy_correlation(
    task: PruningTask,
    histories: dict[str, list[SearchResult]],
    settings: BenchmarkSettings,
    target: float,
) -> dict[str, Any]:
    """How well search-time validation accuracy predicts accuracy after fine-tuning.

    From every full-fidelity, in-budget candidate any method evaluated (deduplicated),
    ``settings.proxy_candidates`` are taken at evenly spaced ranks of validation accuracy,
    fine-tuned the way the benchmark fine-tunes (at least one epoch), and scored on test.
    Returns the Spearman correlation and the pairs. Costs fine-tuning, not search budget.
    """
    from scipy.stats import spearmanr

    unique: dict[tuple[int, ...], Candidate] = {}
    for runs in histories.values():
        for run in runs:
            for c in run.history:
                if c.fidelity >= 1.0 and within_budget(c, target):
                    unique.setdefault(c.channels, c)
    pool = sorted(unique.values(), key=lambda c: (c.accuracy, c.channels))
    n = min(settings.proxy_candidates, len(pool))
    if n < 3:
        raise ConfigError(
            f"the proxy correlation needs at least 3 distinct in-budget candidates, the "
            f"searches evaluated {len(pool)}; raise --evals or add methods"
        )
    picks = [pool[int(round(i))] for i in np.linspace(0, len(pool) - 1, n)]
    pairs = []
    for candidate in picks:
        delivered = deliver(
            task,
            candidate,
            finetune_epochs=max(settings.finetune_epochs, 1),
            lr=settings.finetune_lr,
            seed=0,
            finetune_images=settings.finetune_images,
        )
        assert delivered.test_accuracy_finetuned is not None
        pairs.append((candidate.accuracy, delivered.test_accuracy_finetuned))
    rho = spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    return {
        "spearman": float(rho),
        "n": len(pairs),
        "pairs": [{"val_accuracy": v, "test_accuracy_finetuned": t} for v, t in pairs],
    }


def benchmark_config(env_config: EnvConfig, policy: str | None) -> EnvConfig:
    """The preset a benchmark runs on (with a transfer policy's action bounds, if one is
    given)."""
    if policy is None:
        return env_config
    # every method shares the policy's action bounds, reward and target; its feature
    # set and action mode stay its own (the transfer methods apply them)
    shared = env_config_for_policy(env_config, load_policy(policy), None).to_dict()
    return env_config.derive({k: shared[k] for k in ("target", "min_keep", "max_keep", "reward")})


def load_task(env_config: EnvConfig, policy: str | None) -> PruningTask:
    """The task a benchmark runs on (:func:`benchmark_config`'s)."""
    return load_preset_task(benchmark_config(env_config, policy))
