"""The vision transformers' figures: every method on a ViT, transfer to another, ViT-B/16's cost.

    python experiments/vit_suite.py --resume      # run (or finish) every stage, write the page
    python experiments/vit_suite.py --page-only   # seconds: docs/vit.md from kept results
    python experiments/vit_suite.py --resume --stages retime   # idle machine: time again

1. Search: fmnist-vit at MACs targets --targets, every method (ppo, random, eagleeye, tpe,
   cmaes, uniform, magnitude, sensitivity), --evals full evaluations each, --seeds seeds;
   one fine-tuning pass over --finetune-images training images; the CPU speedup of every
   best, timed interleaved with the original.
2. Transfer: fmnist-vit-heldout (another patch size, depth, width and head count) at the
   same targets: the general policy (policies/general, trained on CNNs only) zero-shot
   (``transfer``, as ``rlprune apply`` plays it) and refined (``transfer-refine``,
   --refine-evals evaluations) against uniform, sensitivity and TPE at --evals.
3. Cost: torchvision's vit_b_16 at --size (random weights, 10 classes): the analysis's
   time and an episode's non-forward part (copy and surgery), as
   ``python tools/check_architectures.py --models vit_b_16 --size 224`` measures them.
4. Retime (not by default; for an idle machine): every kept best timed again against the
   original, interleaved, --repeats passes at batch 1 and 64, its speedups replaced.

Results are kept, compressed, in docs/benchmarks/vit/ (committed) after every result, so
``--resume`` continues across sessions; the page is docs/vit.md, which
``python experiments/benchmark_suite.py ... --page-only`` includes in BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlprune.arguments import arg, parse
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.evaluation.splits import from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import make_config
from rlprune.models.vision import build_classifier
from rlprune.presets.loader import load_env_config
from rlprune.reports.tables import render_markdown, summarise
from rlprune.reports.versions import software_versions
from rlprune.search.benchmark import BenchmarkSettings, load_task
from rlprune.suites import finished, folder_results, restore, retime, run_kept, store

ROOT = Path(__file__).resolve().parent.parent
KEPT = ROOT / "docs" / "benchmarks" / "vit"
PAGE = ROOT / "docs" / "vit.md"
SEARCH_ENV = "fmnist-vit"
HELDOUT_ENV = "fmnist-vit-heldout"
METHODS = ("ppo", "random", "eagleeye", "tpe", "cmaes", "uniform", "magnitude", "sensitivity")
TRANSFER_METHODS = ("transfer", "transfer-refine", "uniform", "sensitivity", "tpe")
STAGES = ("search", "transfer", "cost", "retime")


def float_list(text: str) -> list[float]:
    """An argparse type: numbers, comma-separated."""
    return [float(part) for part in text.split(",")]


def text_list(text: str) -> list[str]:
    """An argparse type: names, comma-separated."""
    return text.split(",")


@dataclass
class Args:
    """The suite's arguments (``--flag-name`` for each field)."""

    targets: list[float] = arg([0.5, 0.7], "comma-separated MACs targets", parse=float_list)
    evals: int = arg(50, "full evaluations per method and seed")
    refine_evals: int = arg(20, "transfer-refine's evaluations after the zero-shot episode")
    seeds: int = arg(3, "seeds per method")
    finetune_images: int = arg(10_000, "one fine-tuning pass over this many training images")
    size: int = arg(224, "vit_b_16's input size for the cost stage")
    episodes: int = arg(3, "random-action episodes the cost stage times")
    stages: list[str] = arg(
        list(STAGES[:3]),
        "comma-separated stages to run (retime: every kept best timed again, for an idle machine)",
        parse=text_list,
    )
    repeats: int = arg(15, "interleaved passes per batch size when re-timing")
    out: Path = arg(ROOT / "results" / "vit", "where the benchmark folders go (not committed)")
    data: Path = arg(KEPT, "where results are kept (committed); --resume restores them first")
    page: Path = arg(PAGE, "where to write the page")
    resume: bool = arg(False, "keep finished results")
    page_only: bool = arg(False, "run nothing: write the page from the kept results")


def _run(env: str, target: float, methods: tuple[str, ...], args: Args, **extra: Any) -> Path:
    key = f"{env}-t{target}"
    out = args.out / key
    if args.resume or args.page_only:
        restore(args.data, out, ROOT)
    if args.page_only or (args.resume and finished(out, methods)):
        return out
    config = load_env_config(env, {"target": target})
    task = load_task(config, None)
    settings = BenchmarkSettings(
        methods=methods,
        evals=args.evals,
        seeds=args.seeds,
        finetune_epochs=1 if args.finetune_images else 0,
        finetune_images=args.finetune_images or None,
        **extra,
    )
    print(f"vit suite: {key}: {', '.join(methods)}", flush=True)
    run_kept(task, config, settings, out, args.data, ROOT, key, resume=args.resume)
    return out


def _retime(folder: Path, env: str, target: float, args: Args) -> None:
    """Time every kept best in ``folder`` again, interleaved with the original (idle machine)."""
    if not (folder / "benchmark.json").is_file():
        return
    task = load_task(load_env_config(env, {"target": target}), None)
    retime(folder, task, repeats=args.repeats)
    store(folder, args.data, ROOT)


def _cost(args: Args) -> dict[str, Any]:
    """vit_b_16's analysis time and the median non-forward part of a random episode."""
    path = args.data / f"vit_b_16-{args.size}-cost.json"
    if args.page_only or (args.resume and path.is_file()):
        return dict(json.loads(path.read_text())) if path.is_file() else {}
    model = build_classifier("vit_b_16", args.size)
    n = 4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3 * n, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 10, (3 * n,), generator=g)
    data = from_tensors(x[:n], y[:n], x[n : 2 * n], y[n : 2 * n], x[2 * n :], y[2 * n :])
    config = make_config(
        {
            "name": "tv-vit_b_16",
            "target": 0.5,
            "calibration_batches": 1,
            "batch_size": n,
            "val_size": n,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        task = PruningTask.from_model(model, data, config)
        analysis_s = time.perf_counter() - started
    env = PruningEnv(task=task, config=config)
    rng = np.random.default_rng(0)
    episodes, surgery = [], []
    for episode in range(args.episodes):
        task.cache.clear()
        before = task.timings.prune
        started = time.perf_counter()
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, done, _, _ = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        episodes.append(time.perf_counter() - started)
        surgery.append(task.timings.prune - before)
    kinds = [u.kind for u in task.analysis.units]
    result = {
        "model": "vit_b_16",
        "size": args.size,
        "units": len(kinds),
        "head_units": kinds.count("attention"),
        "mlp_units": kinds.count("linear"),
        "frozen": [list(f) for f in task.analysis.frozen],
        "exact": task.analysis.mac_model.exact,
        "gmacs": task.analysis.macs / 1e9,
        "analysis_s": analysis_s,
        "episode_s": statistics.median(episodes),
        "surgery_s": statistics.median(surgery),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0],
        "software": software_versions(),
    }
    args.data.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _table(folder: Path, title: str, order: tuple[str, ...]) -> str:
    results = sorted(
        folder_results(folder),
        key=lambda r: (order.index(r.method) if r.method in order else 99, r.seed),
    )
    return render_markdown(summarise(results), title=title).replace("# ", "### ", 1)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def verdict(folder: Path, method: str = "ppo") -> str:
    """Where ``method`` ranks on mean validation accuracy (percent, to two decimals, as the
    table shows it), said plainly."""
    means = {
        s.method: round(100 * s.val_accuracy.mean, 2) for s in summarise(folder_results(folder))
    }
    if method not in means:
        return ""
    own = means[method]
    ahead = sorted(((v, m) for m, v in means.items() if v > own), reverse=True)
    tied = [m for m, v in means.items() if v == own and m != method]
    if ahead:
        best, leader = ahead[0]
        return (
            f"**{method} is not best here**: {_ordinal(len(ahead) + 1)} of {len(means)} on "
            f"validation accuracy, {best - own:.2f} points behind {leader} ({best:.2f} %)."
        )
    if tied:
        nets = {(r.method, r.seed): list(r.best.channels) for r in folder_results(folder)}
        same = [
            m for m in tied if all(nets[k] == nets.get((m, k[1])) for k in nets if k[0] == method)
        ]
        return (
            f"{method} shares the best validation accuracy ({own:.2f} %) with "
            f"{', '.join(tied)}; it is not ahead of {'it' if len(tied) == 1 else 'them'}"
            + (f" (the same pruned network as {', '.join(same)} on every seed)." if same else ".")
        )
    runner = max(v for m, v in means.items() if m != method)
    return f"{method} is best on validation accuracy, {own - runner:.2f} points ahead."


def _timed(folder: Path) -> str:
    """Which speedups were re-timed on an idle machine (``--stages retime``)."""
    files = sorted((folder / "results").glob("*.json"))
    retimed = sum(bool(json.loads(p.read_text()).get("retimed")) for p in files)
    if retimed == len(files):
        return (
            "Speedups: every result re-timed with the machine otherwise idle "
            "(`--stages retime`, interleaved with the original)."
        )
    return (
        f"Speedups: {retimed} of {len(files)} results re-timed on an idle machine; the rest "
        "were timed during the search, beside other jobs (`--stages retime` times them again)."
    )


def _section(
    folder: Path, title: str, order: tuple[str, ...], label: str, missing: list[str]
) -> list[str]:
    """A setting's table: whole, partial (what is kept so far, said so) or missing."""
    if finished(folder, order):
        return [_table(folder, title, order), _timed(folder), ""]
    done = len(list((folder / "results").glob("*.json"))) if folder.is_dir() else 0
    if not done:
        missing.append(label)
        return []
    missing.append(f"the rest of {label}")
    total = len(order) * json.loads((folder / "benchmark.json").read_text())["settings"]["seeds"]
    title = f"{title} (partial: {done} of {total} results so far)"
    return [_table(folder, title, order), _timed(folder), ""]


def write_page(
    args: Args, search: dict[float, Path], transfer: dict[float, Path], cost: dict[str, Any]
) -> None:
    """docs/vit.md from what is kept."""
    lines = [
        "# Vision transformers",
        "",
        "Regenerate with `python experiments/vit_suite.py --page-only` (seconds, from the "
        "results kept in docs/benchmarks/vit/); `python experiments/vit_suite.py --resume` "
        "runs what is missing. How transformers are pruned: "
        "[docs/guide/transformers.md](guide/transformers.md). Every cost is in full-evaluation "
        "equivalents, probes charged; the fine-tuned test accuracy is one pass over "
        f"{args.finetune_images} training images; the speedup is measured on this 2-core CPU, "
        "interleaved with the original, at batch 64 (and 1).",
        "",
        f"## Every method on {SEARCH_ENV}",
        "",
    ]
    missing: list[str] = []
    for target, folder in search.items():
        title = f"{SEARCH_ENV}, MACs target {target}, {args.evals} evaluations"
        lines += _section(folder, title, METHODS, f"{SEARCH_ENV} at {target}", missing)
        if finished(folder, METHODS):
            lines += [verdict(folder), ""]
    lines += [
        f"## Transfer to {HELDOUT_ENV}",
        "",
        "The general policy was trained on CNNs only; on a transformer it lies outside its "
        "family, so `transfer` plays it as `rlprune apply` does (its corrections damped to its "
        f"off-family strength). `transfer-refine` adds {args.refine_evals} evaluations of TPE "
        "around that configuration.",
        "",
    ]
    for target, folder in transfer.items():
        title = f"{HELDOUT_ENV}, MACs target {target}"
        lines += _section(folder, title, TRANSFER_METHODS, f"{HELDOUT_ENV} at {target}", missing)
    lines += ["## ViT-B/16's cost", ""]
    if cost:
        lines += [
            f"torchvision's vit_b_16 at {cost['size']}x{cost['size']}, random weights: "
            f"{cost['units']} units ({cost['head_units']} head units, {cost['mlp_units']} MLP "
            f"widths; the embedding kept), {cost['gmacs']:.2f} GMACs, MACs model "
            f"{'exact' if cost['exact'] else 'approximate'}.",
            "",
            "| analysis s | episode s (median) | non-forward part s (copy + surgery) |",
            "| --- | --- | --- |",
            f"| {cost['analysis_s']:.1f} | {cost['episode_s']:.2f} | {cost['surgery_s']:.2f} |",
            "",
            f"{cost['threads']} torch threads; an episode here scores one candidate on "
            "4 images (its forward part is the rest). "
            + (
                f"Load average {cost['load_average']:.1f} while timed (a shared 2-core CPU)."
                if "load_average" in cost
                else "Timed on a shared 2-core CPU (load average about 9 at the time)."
            ),
            "",
        ]
    else:
        missing.append("vit_b_16's cost")
    if missing:
        lines += ["Not run yet (`--resume` runs them): " + ", ".join(missing) + ".", ""]
    args.page.write_text("\n".join(lines))
    print(f"wrote {args.page}")


def main(argv: list[str] | None = None) -> int:
    """Run (or restore) each stage, keep the results, write the page."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    args.out.mkdir(parents=True, exist_ok=True)
    skip = dict(vars(args), page_only=True)
    only = Args(**skip)
    search, transfer = {}, {}
    cost = _cost(args if "cost" in args.stages else only)  # minutes: first
    for target in args.targets:
        run_args = args if "search" in args.stages else only
        search[target] = _run(SEARCH_ENV, target, METHODS, run_args)
        run_args = args if "transfer" in args.stages else only
        transfer[target] = _run(
            HELDOUT_ENV,
            target,
            TRANSFER_METHODS,
            run_args,
            policy=str(ROOT / "policies" / "general"),
            adapt_episodes=args.refine_evals,
        )
    if "retime" in args.stages:
        for target in args.targets:
            _retime(search[target], SEARCH_ENV, target, args)
            _retime(transfer[target], HELDOUT_ENV, target, args)
    write_page(args, search, transfer, cost)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
