"""Benchmark suites that outlive a session: results kept, compressed, in a committed folder.

A suite runs many benchmark folders (``benchmark.json``, ``results/METHOD__SEED.json``,
``proxy.json``; :func:`rlprune.search.benchmark.run_benchmark` writes them). Each folder's
manifest, results and proxy are kept as one gzip JSON file in a data folder that is
committed (a few KB per result), updated after every result, so that a fresh clone can
:func:`restore` them, finish the suite across sessions and rebuild its pages without
running again what they show. ``experiments/benchmark_suite.py`` (BENCHMARKS.md) and
``experiments/transfer_suite.py`` (its transfer section) keep their results this way.

Weights paths in a kept manifest are relative to the repository (``root``), so that the
data does not name the machine it ran on.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .errors import RunError
from .evaluation.task import PruningTask
from .evaluation.timing import paired_speedups
from .mdp.settings import EnvConfig
from .reports.tables import MethodSeedResult
from .search.benchmark import BenchmarkSettings, manifest_settings, run_benchmark
from .search.methods import METHODS

__all__ = [
    "adopt_settings",
    "elapsed",
    "finished",
    "folder_results",
    "forget",
    "rerun_error",
    "restore",
    "retime",
    "run_kept",
    "settle",
    "store",
]


def _portable(path: str | None, root: Path, *, inward: bool) -> str | None:
    """A weights path relative to ``root`` (``inward=False``) or back (``True``)."""
    if not path:
        return path
    if inward:
        return path if Path(path).is_absolute() else str(root / path)
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:  # outside the repository: kept as it is
        return path


def store(folder: Path, data: Path, root: Path) -> Path | None:
    """Keep a benchmark folder's manifest, results and proxy in ``data`` (one gzip JSON,
    named after the folder); ``None`` when the folder has no manifest yet."""
    manifest_path = folder / "benchmark.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    manifest["env"]["weights"] = _portable(manifest["env"].get("weights"), root, inward=False)
    proxy = folder / "proxy.json"
    payload = {
        "manifest": manifest,
        "results": {
            p.stem: json.loads(p.read_text()) for p in sorted((folder / "results").glob("*.json"))
        },
        "proxy": json.loads(proxy.read_text()) if proxy.is_file() else None,
    }
    data.mkdir(parents=True, exist_ok=True)
    path = data / f"{folder.name}.json.gz"
    text = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(text, mtime=0))
    return path


def restore(data: Path, folder: Path, root: Path) -> bool:
    """Write what ``data`` keeps of ``folder`` into it (never over existing files);
    whether it keeps anything."""
    path = data / f"{folder.name}.json.gz"
    if not path.is_file():
        return False
    payload = json.loads(gzip.decompress(path.read_bytes()))
    manifest = payload["manifest"]
    manifest["env"]["weights"] = _portable(manifest["env"].get("weights"), root, inward=True)
    (folder / "results").mkdir(parents=True, exist_ok=True)
    files = {folder / "benchmark.json": manifest}
    files.update({folder / "results" / f"{k}.json": v for k, v in payload["results"].items()})
    if payload.get("proxy") is not None:
        files[folder / "proxy.json"] = payload["proxy"]
    for file, content in files.items():
        if not file.is_file():
            file.write_text(json.dumps(content, indent=2))
    return True


def retime(
    folder: Path,
    task: PruningTask,
    *,
    repeats: int,
    threads: int | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """Time each result's best network in ``folder`` again against ``task``'s original,
    interleaved at batch 1 and 64, and keep those speedups (the result marked ``retimed``):
    a search's own timings share the machine with whatever else runs, so this is meant for
    an idle one. Returns how many results it re-timed."""
    c, h, w = (int(d) for d in task.analysis.input_shape)
    paths = sorted((folder / "results").glob("*.json"))
    for path in paths:
        raw = json.loads(path.read_text())
        result = raw["result"]
        channels = np.array(result["best"]["channels"], dtype=np.int64)
        speed = paired_speedups(
            task.model,
            task.prune(channels).model,
            (c, h, w),
            (1, 64),
            repeats=repeats,
            threads=threads,
        )
        result["latency_speedup"] = speed[64].speedup
        result["speedup_b1"] = speed[1].speedup
        result["speedup_spread"] = {str(b): [s.p10, s.p90] for b, s in speed.items()}
        raw["retimed"] = True
        path.write_text(json.dumps(raw))
        echo(f"{folder.name} {path.stem}: {speed[1].speedup:.2f}x b1, {speed[64].speedup:.2f}x b64")
    return len(paths)


def forget(folder: Path, methods: Sequence[str]) -> None:
    """Drop the results of ``methods`` from a (restored) folder, so that they run again
    (after a change to those methods; the others' results stand)."""
    for method in methods:
        for path in (folder / "results").glob(f"{method}__*.json"):
            path.unlink()


def rerun_error(rerun: Sequence[str], resume: bool) -> str | None:
    """Why a suite's ``--rerun METHODS`` would be ignored or names no method (``None`` if
    it is fine): it drops kept results, so it needs ``--resume``."""
    if rerun and not resume:
        return "--rerun needs --resume: it drops kept results so that they run again"
    unknown = [m for m in rerun if m not in METHODS]
    if unknown:
        return f"--rerun: unknown method {unknown[0]!r}; valid: {', '.join(METHODS)}"
    return None


def finished(folder: Path, methods: Sequence[str] = ()) -> bool:
    """Whether a benchmark folder holds a result for every (method, seed) of its manifest,
    and for every one of ``methods`` (ones the manifest may not list yet)."""
    manifest = folder / "benchmark.json"
    if not manifest.is_file():
        return False
    settings = json.loads(manifest.read_text())["settings"]
    return all(
        (folder / "results" / f"{method}__{seed}.json").is_file()
        for method in {*settings["methods"], *methods}
        for seed in range(settings["seeds"])
    )


def settle(
    out: Path,
    data: Path,
    root: Path,
    methods: Sequence[str],
    *,
    resume: bool,
    page_only: bool,
    rerun: Sequence[str] = (),
) -> bool:
    """Bring a suite's benchmark folder ``out`` up to what ``data`` keeps of it (with
    ``resume`` or ``page_only``; ``rerun``'s methods dropped, to run again) and say whether
    it holds every result of ``methods`` already, so that nothing is left to run.

    Raises:
        RunError: with ``page_only``, the kept folder is not finished (one line: resume it).
    """
    if resume or page_only:
        restore(data, out, root)
    if page_only:
        if not finished(out, methods):
            raise RunError(
                f"{out.name} is not finished in {data}; run the suite with --resume to finish it"
            )
        return True
    if resume:
        forget(out, [m for m in rerun if m in methods])
        return finished(out, methods)
    return False


def adopt_settings(out: Path, settings: BenchmarkSettings) -> None:
    """Write ``settings`` into a kept folder's manifest (if it has one), so that the methods
    ``--rerun`` dropped run again under them; the others' results stand."""
    path = out / "benchmark.json"
    if path.is_file():
        manifest = json.loads(path.read_text())
        manifest["settings"] = json.loads(json.dumps(manifest_settings(settings), default=list))
        path.write_text(json.dumps(manifest, indent=2))


def folder_results(folder: Path) -> list[MethodSeedResult]:
    """Every (method, seed) result of a benchmark folder, in file-name order."""
    return [
        MethodSeedResult.from_dict(json.loads(p.read_text())["result"])
        for p in sorted((folder / "results").glob("*.json"))
    ]


def elapsed(folder: Path) -> float:
    """Search seconds a benchmark folder took, from its result files (valid across resumes
    and independent of file times): every (method, seed)'s wall time, a deterministic
    method's once (its other seeds are copies)."""
    total = 0.0
    for path in (folder / "results").glob("*.json"):
        result = json.loads(path.read_text())["result"]
        method, seed = result["method"], int(result["seed"])
        spec = METHODS.get(method)
        copied = spec is not None and not spec.seeded and seed > 0
        if not copied:
            total += float(result["wall_time_s"])
    return total


def run_kept(
    task: PruningTask,
    config: EnvConfig,
    settings: BenchmarkSettings,
    out: Path,
    data: Path,
    root: Path,
    label: str,
    *,
    resume: bool,
) -> None:
    """Run one benchmark folder on ``task`` at ``config`` (the preset it was loaded for;
    continuing it with ``resume`` when it has a manifest), printing a line as each
    (method, seed) starts (a heavy network's job runs for many minutes) and one per result,
    and keeping the folder in ``data`` after every one."""
    resume_it = resume and (out / "benchmark.json").is_file()

    def start(method: str, seed: int) -> None:
        print(f"  [{label}] {method} seed {seed}: started {time.strftime('%H:%M')}", flush=True)

    def keep(result: MethodSeedResult, done: int, total: int) -> None:
        print(
            f"  [{label}] {done}/{total} {result.method} seed {result.seed}: "
            f"val {result.val_accuracy:.4f} test {result.test_accuracy:.4f} "
            f"(cost {result.evaluations:.1f})",
            flush=True,
        )
        store(out, data, root)

    run_benchmark(
        task,
        settings,
        out,
        config=config,
        resume=resume_it,
        overwrite=not resume_it,
        on_result=keep,
        on_start=start,
    )
    store(out, data, root)  # with the proxy
