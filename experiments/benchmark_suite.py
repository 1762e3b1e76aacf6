"""Regenerate BENCHMARKS.md: the Fashion-MNIST suite and the transfer table.

    python experiments/benchmark_suite.py --page-only  # seconds: the page from the kept results
    python experiments/benchmark_suite.py              # hours on a 2-core CPU with the defaults
    python experiments/benchmark_suite.py --resume     # finish an interrupted suite

1. Suite: fmnist-resnet20 at targets 0.5 and 0.3, fmnist-vgg and fmnist-mobilenetv2
   at 0.5; every default method (rlprune.search.methods.DEFAULT_METHODS, the
   recommended agent first); at each of --budgets (in full-evaluation equivalents);
   --seeds seeds. Every method's best gets one fine-tuning pass over --finetune-images
   training images; at every budget, --proxy-candidates evaluated candidates are
   fine-tuned the same way for the Spearman correlation of the search's proxy.
2. Transfer: the page includes docs/transfer.md, written by experiments/transfer_suite.py
   (the general policy on networks outside its training family), unless --no-transfer;
   and docs/ablation.md, written by experiments/ablation.py, docs/latency.md, written
   by experiments/latency_suite.py (the latency budget), docs/vit.md, written by
   experiments/vit_suite.py (vision transformers), and docs/zoo.md, written by
   experiments/zoo.py (the general policy on a torchvision zoo).

Results go to --out (default results/suite, not committed); the tables are written
into BENCHMARKS.md and the plots copied to docs/benchmarks/. Each setting's manifest,
per-(method, seed) results and proxy figures are also kept, compressed, in --data
(default docs/benchmarks/data/, committed: a few KB per result; :mod:`rlprune.suites`),
updated after every result: with --resume or --page-only a fresh clone restores them into
--out first, so the suite can be finished across sessions and the page rebuilt without
rerunning what it shows.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rlprune.arguments import arg, parse
from rlprune.errors import run_script
from rlprune.presets.loader import load_env_config
from rlprune.reports.tables import MethodSeedResult, render_markdown, summarise
from rlprune.reports.versions import software_versions
from rlprune.search.benchmark import BenchmarkSettings, load_task
from rlprune.search.methods import DEFAULT_METHODS, RECOMMENDED
from rlprune.suites import (
    elapsed,
    finished,
    folder_results,
    forget,
    rerun_error,
    restore,
    run_kept,
    store,
)

SUITE = (
    ("fmnist-resnet20", 0.5),
    ("fmnist-resnet20", 0.3),
    ("fmnist-vgg", 0.5),
    ("fmnist-mobilenetv2", 0.5),
)
METHODS = DEFAULT_METHODS
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "benchmarks" / "data"


def int_list(text: str) -> list[int]:
    """An argparse type: whole numbers, comma-separated."""
    return [int(part) for part in text.split(",")]


def method_list(text: str) -> list[str]:
    """An argparse type: method names, comma-separated."""
    return text.split(",")


def env_targets(text: str) -> list[tuple[str, float]]:
    """An argparse type: ``env@target`` settings, comma-separated."""
    return [(env, float(target)) for env, target in (item.split("@") for item in text.split(","))]


@dataclass
class Args:
    """The suite's arguments (``--flag-name`` for each field)."""

    budgets: list[int] = arg(
        [50, 200],
        "comma-separated budgets in full evaluations per method and seed",
        parse=int_list,
    )
    finetune_images: int = arg(
        10_000, "one fine-tuning pass over this many training images for every best (0: none)"
    )
    proxy_candidates: int = arg(20, "candidates for the proxy correlation")
    seeds: int = arg(3, "seeds per method")
    out: Path = arg(ROOT / "results" / "suite", "where the benchmark folders go (not committed)")
    resume: bool = arg(False, "keep finished results")
    rerun: list[str] = arg(
        [],
        "with --resume: run these methods again (after a change to them); the kept results "
        "of the others stand",
        parse=method_list,
        metavar="METHODS",
    )
    data: Path = arg(
        DATA,
        "where each setting's results are kept (committed); --resume and --page-only "
        "restore them into --out first",
    )
    settings: list[tuple[str, float]] = arg(
        list(SUITE),
        "comma-separated env@target (default: the Fashion-MNIST suite)",
        parse=env_targets,
    )
    markdown: Path = arg(ROOT / "BENCHMARKS.md", "where to write the page")
    no_transfer: bool = arg(
        False,
        "leave out the transfer section (docs/transfer.md, from experiments/transfer_suite.py)",
    )
    page_only: bool = arg(
        False,
        "run nothing: write the page from the finished results under --out (restored from "
        "--data); settings not finished yet are listed as missing",
    )


def _run_suite_entry(env: str, target: float, budget: int, args: Args) -> tuple[Path, float]:
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
    run_kept(task, config, settings, out, args.data, ROOT, f"{env} t={target}", resume=args.resume)
    return out, time.perf_counter() - start


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
        summaries = {s.method: s for s in summarise(folder_results(folder))}
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
        summaries = {s.method: s for s in summarise(folder_results(folder))}
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


def main(argv: list[str] | None = None) -> int:
    """Run (or restore) every setting at every budget, keep the results, write the page."""
    args = parse(
        Args,
        argv,
        description=__doc__.splitlines()[0],
        check=lambda a: rerun_error(a.rerun, a.resume),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    folders: dict[str, Path] = {}
    missing: list[str] = []
    for env, target in args.settings:
        for budget in args.budgets:
            key = f"{env}-t{target}-b{budget}"
            if args.resume or args.page_only:
                restore(args.data, args.out / key, ROOT)
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
        store(folder, args.data, ROOT)  # results finished earlier under --out are kept too
    print(f"suite finished in {(time.perf_counter() - began) / 60:.0f} min (this invocation)")
    timings = {key: elapsed(folder) for key, folder in folders.items()}
    write_markdown(args, folders, timings, sum(timings.values()), missing)
    return 0


def write_markdown(
    args: Args,
    folders: dict[str, Path],
    timings: dict[str, float],
    total: float,
    missing: list[str] | None = None,
) -> None:
    """Compose BENCHMARKS.md from the finished results and copy the plots next to it."""
    plots = args.markdown.parent / "docs" / "benchmarks"
    plots.mkdir(parents=True, exist_ok=True)
    versions = software_versions()
    flags = (
        f" --budgets {','.join(map(str, args.budgets))} --seeds {args.seeds} "
        f"--finetune-images {args.finetune_images} --proxy-candidates {args.proxy_candidates}"
        + (
            f" --settings {','.join(f'{e}@{t}' for e, t in args.settings)}"
            if args.settings != list(SUITE)
            else ""
        )
        + (" --no-transfer" if args.no_transfer else "")
    )
    lines = [
        "# Benchmarks",
        "",
        "Regenerate this page from the results kept in docs/benchmarks/data/ with "
        f"`python experiments/benchmark_suite.py{flags} --page-only` (seconds: nothing runs "
        "again"
        + (
            "; `python experiments/transfer_suite.py --page-only` rebuilds the transfer "
            "section, then this page"
            if not args.no_transfer
            else ""
        )
        + "). Without `--page-only` the same command runs the searches again (add `--resume` "
        "to finish an interrupted run). "
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
            "Not run yet (the command above with `--resume` instead of `--page-only` runs "
            "them): " + ", ".join(missing) + ".",
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
    latency = args.markdown.parent / "docs" / "latency.md"
    if latency.is_file():  # from experiments/latency_suite.py: one level down
        body = latency.read_text().strip().splitlines()
        lines += [f"#{line}" if line.startswith("#") else line for line in body] + [""]
    vit = args.markdown.parent / "docs" / "vit.md"
    if vit.is_file():  # from experiments/vit_suite.py: one level down, its links from here
        body = vit.read_text().strip().replace("](guide/", "](docs/guide/").splitlines()
        lines += [f"#{line}" if line.startswith("#") else line for line in body] + [""]
    zoo = args.markdown.parent / "docs" / "zoo.md"
    if zoo.is_file():  # from experiments/zoo.py: one level down, its links from here
        text = zoo.read_text().strip().replace("](benchmarks/", "](docs/benchmarks/")
        text = text.replace("](../", "](")  # links out of docs/
        lines += [f"#{line}" if line.startswith("#") else line for line in text.splitlines()]
        lines += [""]
    for key, folder in folders.items():
        if key.startswith("transfer-"):
            continue
        results = _ordered(folder_results(folder), METHODS)
        env, rest = key.rsplit("-t", 1)
        target, budget = rest.split("-b")
        lines += [
            render_markdown(
                summarise(results),
                title=f"{env}, MACs target {target}, budget {budget} full evaluations",
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
