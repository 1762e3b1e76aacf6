"""Regenerate BENCHMARKS.md: the Fashion-MNIST suite and the transfer table.

    python scripts/benchmark_suite.py            # hours on a 2-core CPU with the defaults
    python scripts/benchmark_suite.py --resume   # finish an interrupted suite

1. Suite: fmnist-resnet20 at targets 0.5 and 0.3, fmnist-vgg and fmnist-mobilenetv2
   at 0.5; every default method (rlprune.search.methods.DEFAULT_METHODS, the
   recommended agent first); at each of --budgets (in full-evaluation equivalents);
   --seeds seeds. Every method's best gets one fine-tuning pass over --finetune-images
   training images; at every budget, --proxy-candidates evaluated candidates are
   fine-tuned the same way for the Spearman correlation of the search's proxy.
2. Transfer: the page includes docs/transfer.md, written by scripts/transfer_suite.py (the
   general policy on networks outside its training family), unless --no-transfer.

Results go to --out (default results/suite, not committed); the tables are written
into BENCHMARKS.md and the plots copied to docs/benchmarks/. Each setting's manifest,
per-(method, seed) results and proxy figures are also kept, compressed, in --data
(default docs/benchmarks/data/, committed: a few KB per result), updated after every
result: with --resume or --page-only a fresh clone restores them into --out first, so
the suite can be finished across sessions and the page rebuilt without rerunning what
it shows.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from rlprune.errors import run_script
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig
from rlprune.presets.loader import load_env_config
from rlprune.reports.tables import MethodSeedResult, comparison_lines, render_markdown, summarise
from rlprune.reports.versions import software_versions
from rlprune.search.benchmark import BenchmarkSettings, load_task, run_benchmark
from rlprune.search.methods import DEFAULT_METHODS, RECOMMENDED
from rlprune.search.methods import METHODS as ALL_METHODS

SUITE = (
    ("fmnist-resnet20", 0.5),
    ("fmnist-resnet20", 0.3),
    ("fmnist-vgg", 0.5),
    ("fmnist-mobilenetv2", 0.5),
)
METHODS = DEFAULT_METHODS
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks" / "data"


def _portable(path: str | None, *, inward: bool) -> str | None:
    """A weights path relative to the repository (``inward=False``) or back (``True``)."""
    if not path:
        return path
    if inward:
        return path if Path(path).is_absolute() else str(ROOT / path)
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:  # outside the repository: kept as it is
        return path


def store(folder: Path, data: Path) -> Path | None:
    """Keep a suite folder's manifest, results and proxy in ``data`` (one gzip JSON)."""
    manifest_path = folder / "benchmark.json"
    if not manifest_path.is_file():
        return None
    manifest = json.loads(manifest_path.read_text())
    manifest["env"]["weights"] = _portable(manifest["env"].get("weights"), inward=False)
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


def restore(data: Path, folder: Path) -> bool:
    """Write what ``data`` keeps of ``folder`` into it (never over existing files)."""
    path = data / f"{folder.name}.json.gz"
    if not path.is_file():
        return False
    payload = json.loads(gzip.decompress(path.read_bytes()))
    manifest = payload["manifest"]
    manifest["env"]["weights"] = _portable(manifest["env"].get("weights"), inward=True)
    (folder / "results").mkdir(parents=True, exist_ok=True)
    files = {folder / "benchmark.json": manifest}
    files.update({folder / "results" / f"{k}.json": v for k, v in payload["results"].items()})
    if payload.get("proxy") is not None:
        files[folder / "proxy.json"] = payload["proxy"]
    for file, content in files.items():
        if not file.is_file():
            file.write_text(json.dumps(content, indent=2))
    return True


def forget(folder: Path, methods: list[str]) -> None:
    """Drop the kept results of ``methods`` from a restored folder, so that they run again
    (after a change to those methods; the others' results stand)."""
    for method in methods:
        for path in (folder / "results").glob(f"{method}__*.json"):
            path.unlink()


def add_rerun_argument(parser: argparse.ArgumentParser, example: str) -> None:
    """``--rerun METHODS`` (for :func:`forget`), with an ``example`` of when to use it."""
    parser.add_argument(
        "--rerun",
        type=lambda t: t.split(","),
        default=[],
        metavar="METHODS",
        help=f"with --resume: run these methods again ({example}); the kept results of the "
        "others stand",
    )


def check_rerun(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error for a --rerun that would be ignored or names no method."""
    if args.rerun and not args.resume:
        parser.error("--rerun needs --resume: it drops kept results so that they run again")
    unknown = [m for m in args.rerun if m not in ALL_METHODS]
    if unknown:
        parser.error(f"--rerun: unknown method {unknown[0]!r}; valid: {', '.join(ALL_METHODS)}")


def run_kept(
    task: PruningTask,
    config: EnvConfig,
    settings: BenchmarkSettings,
    out: Path,
    data: Path,
    label: str,
    *,
    resume: bool,
) -> None:
    """Run one benchmark folder (continuing it with ``resume``), keeping its results in
    ``data`` after every result, so that it can be resumed from a fresh clone."""
    resume_it = resume and (out / "benchmark.json").is_file()
    run_benchmark(
        task,
        settings,
        out,
        config=config,
        resume=resume_it,
        overwrite=not resume_it,
        on_result=lambda r, done, total: (
            print(
                f"  [{label}] {done}/{total} {r.method} seed {r.seed}: "
                f"val {r.val_accuracy:.4f} test {r.test_accuracy:.4f} (cost {r.evaluations:.1f})",
                flush=True,
            ),
            store(out, data),
        ),
    )
    store(out, data)  # with the proxy


def _run_suite_entry(
    env: str, target: float, budget: int, args: argparse.Namespace
) -> tuple[Path, float]:
    out = args.out / f"{env}-t{target}-b{budget}"
    start = time.perf_counter()
    config = load_env_config(env, {"target": target})
    task = load_task(config, None)
    settings = BenchmarkSettings(
        methods=METHODS,
        evals=budget,
        seeds=args.seeds,
        finetune_epochs=1 if args.finetune_images else 0,
        finetune_images=args.finetune_images or None,
        # the proxy's correlation at every budget, so that a setting's manifest does not
        # depend on which other budgets the same command ran (--resume compares them)
        proxy_candidates=args.proxy_candidates,
    )
    run_kept(task, config, settings, out, args.data, f"{env} t={target}", resume=args.resume)
    return out, time.perf_counter() - start


def elapsed(folder: Path) -> float:
    """Search seconds a benchmark folder took, from its result files (valid across --resume
    and independent of file times): every (method, seed)'s wall time, a deterministic
    method's once (its other seeds are copies)."""
    total = 0.0
    for path in (folder / "results").glob("*.json"):
        result = json.loads(path.read_text())["result"]
        method, seed = result["method"], int(result["seed"])
        spec = ALL_METHODS.get(method)
        copied = spec is not None and not spec.seeded and seed > 0
        if not copied:
            total += float(result["wall_time_s"])
    return total


def _results(folder: Path) -> list[MethodSeedResult]:
    return [
        MethodSeedResult.from_dict(json.loads(p.read_text())["result"])
        for p in sorted((folder / "results").glob("*.json"))
    ]


def _ordered(results: list[MethodSeedResult], order: tuple[str, ...]) -> list[MethodSeedResult]:
    return sorted(
        results, key=lambda r: (order.index(r.method) if r.method in order else 99, r.seed)
    )


def _summary_lines(folders: dict[str, Path]) -> list[str]:
    """One plain line per suite entry: where the recommended agent ranks on validation
    accuracy, the winner, and its fine-tuned test accuracy against the best method's."""
    lines = []
    for key, folder in folders.items():
        if key.startswith("transfer-"):
            continue
        summaries = {s.method: s for s in summarise(_results(folder))}
        ranked = sorted(summaries.values(), key=lambda s: -s.val_accuracy.mean)
        ours, top = summaries[RECOMMENDED], ranked[0]
        rank = [s.method for s in ranked].index(RECOMMENDED) + 1
        # the best other method: the one to beat, or the one that won
        rival = ranked[1] if top.method == RECOMMENDED else top
        margin = 100 * (ours.val_accuracy.mean - rival.val_accuracy.mean)
        line = (
            f"- **{key}**: {RECOMMENDED} ranks {rank} of {len(ranked)} on validation accuracy "
            f"({100 * ours.val_accuracy.mean:.2f} ± {100 * ours.val_accuracy.std:.2f} %); "
            f"{'next' if rival is not top else 'best'} is {rival.method} "
            f"({100 * rival.val_accuracy.mean:.2f} %, {margin:+.2f} pp)."
        )
        tuned = {
            m: s.test_accuracy_finetuned.mean
            for m, s in summaries.items()
            if s.test_accuracy_finetuned
        }
        if RECOMMENDED in tuned:
            best_tuned = max(tuned, key=lambda m: tuned[m])
            gap = 100 * (tuned[RECOMMENDED] - tuned[best_tuned])
            line += (
                f" Fine-tuned test: {100 * tuned[RECOMMENDED]:.2f} % vs best {best_tuned} "
                f"{100 * tuned[best_tuned]:.2f} % ({gap:+.2f} pp)."
            )
        proxy = folder / "proxy.json"
        if proxy.is_file():
            data = json.loads(proxy.read_text())
            line += f" Proxy: Spearman rho {data['spearman']:.2f} over {data['n']} candidates."
        lines.append(line)
    return lines


def _goal_lines(folders: dict[str, Path], tolerance: float = 0.2) -> list[str]:
    """Per budget: on how many settings the recommended agent has the best mean validation
    accuracy, and on how many its fine-tuned test accuracy is within ``tolerance`` points of
    the best method's (the search-quality goal)."""
    by_budget: dict[str, list[tuple[str, bool, bool | None]]] = {}
    for key, folder in folders.items():
        if key.startswith("transfer-"):
            continue
        summaries = {s.method: s for s in summarise(_results(folder))}
        best_val = max(summaries.values(), key=lambda s: s.val_accuracy.mean)
        tuned = {m: s.test_accuracy_finetuned for m, s in summaries.items()}
        close = None
        ours = tuned.get(RECOMMENDED)
        if ours:
            top = max(t.mean for t in tuned.values() if t)
            close = 100 * (ours.mean - top) >= -tolerance - 1e-9
        setting, budget = key.rsplit("-b", 1)
        by_budget.setdefault(budget, []).append((setting, best_val.method == RECOMMENDED, close))
    lines = []
    for budget, rows in sorted(by_budget.items(), key=lambda item: int(item[0])):
        won = [s for s, best, _ in rows if best]
        near = [s for s, _, ok in rows if ok]
        lines.append(
            f"Goal at budget {budget}: {RECOMMENDED} has the best mean validation accuracy on "
            f"{len(won)} of {len(rows)} settings ({', '.join(won) or 'none'}); its fine-tuned "
            f"test accuracy is the best or within {tolerance} points of the best on "
            f"{len(near)} of {len(rows)}"
            + (
                f" (not on {', '.join(s for s, _, ok in rows if ok is False)})"
                if len(near) < len(rows)
                else ""
            )
            + "."
        )
        lines.append("")
    return lines[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budgets",
        type=lambda text: [int(b) for b in text.split(",")],
        default=[50, 200],
        help="comma-separated budgets in full evaluations per method and seed",
    )
    parser.add_argument(
        "--finetune-images",
        type=int,
        default=10_000,
        help="one fine-tuning pass over this many training images for every best (0: none)",
    )
    parser.add_argument(
        "--proxy-candidates", type=int, default=20, help="candidates for the proxy correlation"
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "suite")
    parser.add_argument("--resume", action="store_true", help="keep finished results")
    add_rerun_argument(parser, "after a change to them")
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="where each setting's results are kept (committed); --resume and --page-only "
        "restore them into --out first",
    )
    parser.add_argument(
        "--settings",
        type=lambda text: [(e, float(t)) for e, t in (item.split("@") for item in text.split(","))],
        default=list(SUITE),
        help="comma-separated env@target (default: the Fashion-MNIST suite)",
    )
    parser.add_argument(
        "--markdown", type=Path, default=ROOT / "BENCHMARKS.md", help="where to write the page"
    )
    parser.add_argument(
        "--no-transfer",
        action="store_true",
        help="leave out the transfer section (docs/transfer.md, from scripts/transfer_suite.py)",
    )
    parser.add_argument(
        "--page-only",
        action="store_true",
        help="run nothing: write the page from the finished results under --out; "
        "settings not finished yet are listed as missing",
    )
    args = parser.parse_args()
    check_rerun(parser, args)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    folders: dict[str, Path] = {}
    missing: list[str] = []
    for env, target in args.settings:
        for budget in args.budgets:
            key = f"{env}-t{target}-b{budget}"
            if args.resume or args.page_only:
                restore(args.data, args.out / key)
            if args.resume:
                forget(args.out / key, args.rerun)
            if args.page_only:
                if finished(args.out / key):
                    folders[key] = args.out / key
                else:
                    missing.append(key)
                continue
            print(f"suite: {env} at target {target}, budget {budget}", flush=True)
            folders[key], _ = _run_suite_entry(env, target, budget, args)
    for folder in folders.values():
        store(folder, args.data)  # results finished earlier under --out are kept too
    print(f"suite finished in {(time.perf_counter() - began) / 60:.0f} min (this invocation)")
    timings = {key: elapsed(folder) for key, folder in folders.items()}
    write_markdown(args, folders, timings, sum(timings.values()), missing)


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


def write_markdown(
    args: argparse.Namespace,
    folders: dict[str, Path],
    timings: dict[str, float],
    total: float,
    missing: list[str] | None = None,
) -> None:
    """Compose BENCHMARKS.md from the finished results and copy the plots next to it."""
    plots = args.markdown.parent / "docs" / "benchmarks"
    plots.mkdir(parents=True, exist_ok=True)
    versions = software_versions()
    lines = [
        "# Benchmarks",
        "",
        "Regenerate this page with `python scripts/benchmark_suite.py "
        f"--budgets {','.join(map(str, args.budgets))} --seeds {args.seeds} "
        f"--finetune-images {args.finetune_images} --proxy-candidates {args.proxy_candidates}"
        + (" --no-transfer" if args.no_transfer else "")
        + "` (add `--resume` to finish an interrupted run, `--page-only` to rewrite the page "
        "from finished results). "
        f"The searches shown took {total / 60:.0f} min on a 2-core CPU (wall time, "
        "fine-tuning and the proxy not included; "
        f"{', '.join(f'{k} {v / 60:.1f} min' for k, v in timings.items())}); "
        f"software: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
        "How to read the tables: every search method is charged in full-evaluation "
        "equivalents (one = the preset's validation split scored after BatchNorm "
        "recalibration; a probe on k images costs k / val_size), cached requests included, "
        "and gets the same budget; uniform and magnitude need one evaluation, sensitivity "
        "spends units x 3 + 1 on its curves. The best candidate by validation accuracy is "
        "then measured once on the test split, and once more after one fine-tuning pass over "
        f"{args.finetune_images} training images (the same for every method; magnitude "
        "and sensitivity are deterministic: they search once, and that best is fine-tuned "
        "once per seed, like every other method's). "
        "Base models: `weights/*.pt`, 6 epochs of `rlprune pretrain`. `ppo` is the default "
        "agent (`agents/ppo.yaml`: feature set 2, residual corrections to the sensitivity "
        "prior); `ppo-v1` is the earlier default (geometry features, absolute keep-ratios).",
        "",
    ]
    lines += ["## Summary", "", *_summary_lines(folders), "", *_goal_lines(folders), ""]
    if missing:
        lines += [
            "Not run yet (the command above with `--resume` adds them): "
            + ", ".join(missing)
            + ".",
            "",
        ]
    earlier = args.markdown.parent / "docs" / "benchmarks-earlier.md"
    if earlier.is_file():
        lines += [
            "Earlier measurements (the previous suite, before the cost currency and the "
            "current default agent; its transfer section): "
            "[docs/benchmarks-earlier.md](docs/benchmarks-earlier.md).",
            "",
        ]
    ablation = args.markdown.parent / "docs" / "ablation.md"
    if ablation.is_file():
        lines += [
            "## What bought the gain",
            "",
            ablation.read_text().strip().replace("# ", "### ", 1),
            "",
        ]
    for key, folder in folders.items():
        if key.startswith("transfer-"):
            continue
        results = _ordered(_results(folder), METHODS)
        env, rest = key.rsplit("-t", 1)
        target, budget = rest.split("-b")
        lines += [
            render_markdown(
                summarise(results),
                title=f"{env}, MACs target {target}, budget {budget} full evaluations",
                notes=comparison_lines(summarise(results), reference=RECOMMENDED),
            ).replace("# ", "## ", 1),
            "",
        ]
        for png in ("accuracy_vs_macs.png", "sample_efficiency.png", "keep_ratios.png"):
            if (folder / png).is_file():  # else restored from --data: the committed plot stays
                shutil.copy(folder / png, plots / f"{key}-{png}")
        lines += [
            f"![accuracy vs MACs](docs/benchmarks/{key}-accuracy_vs_macs.png) "
            f"![sample efficiency](docs/benchmarks/{key}-sample_efficiency.png) "
            f"![keep-ratios](docs/benchmarks/{key}-keep_ratios.png)",
            "",
        ]
    transfer = args.markdown.parent / "docs" / "transfer.md"
    if not args.no_transfer and transfer.is_file():
        lines += [transfer.read_text().strip(), ""]
    args.markdown.write_text("\n".join(lines))
    print(f"wrote {args.markdown} ({total / 60:.0f} min)")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
