"""The latency budget's figures: model accuracy, every method under it, equal-speed search.

    python experiments/latency_suite.py --resume      # run (or finish) every stage, write the page
    python experiments/latency_suite.py --page-only   # seconds: docs/latency.md from kept results

1. Accuracy: per network and batch size (--batches), the latency model is built afresh
   (not from the cache) and checked against --check random candidates timed interleaved
   with the original (``rlprune info --latency`` does the same for one).
2. Search: every default method at ``--metric latency --target 0.5``, --evals full
   evaluations, --seeds seeds, one fine-tuning pass over --finetune-images images; the
   speedup columns are measured interleaved at batch 1 and 64.
3. Equal speed: the MACs suite's ppo (docs/benchmarks/data, target 0.5, 50 evaluations)
   against ppo under a latency budget set to the speed the MACs search reached (its best
   candidates re-timed now, interleaved, at the latency batch): validation and fine-tuned
   test accuracy side by side.
4. Retime (--retime search,equal): every kept best timed again against the original,
   interleaved, --repeats passes at batch 1 and 64; meant for an idle machine.
5. Apply: what ``rlprune apply --metric latency`` delivers (the shipped general policy)
   and its own interleaved timing at batch 1 and 64.

Everything is timed with --threads torch threads (1: steady on a shared machine). Results
are kept, compressed, in docs/benchmarks/latency/ (committed) after every result, so
``--resume`` continues across sessions; the page is docs/latency.md.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlprune.apply import ApplySettings, apply_policy
from rlprune.arguments import arg, parse
from rlprune.errors import RLPruneError, run_script
from rlprune.evaluation.latency import check_model, grid_words, latency_model
from rlprune.evaluation.task import PruningTask
from rlprune.evaluation.timing import interleaved_ms, paired_speedups
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task as load_preset_task
from rlprune.reports.tables import render_markdown, summarise
from rlprune.reports.versions import software_versions
from rlprune.search.benchmark import BenchmarkSettings, load_task
from rlprune.search.methods import DEFAULT_METHODS, RECOMMENDED
from rlprune.suites import finished, folder_results, restore, retime, run_kept, store

ROOT = Path(__file__).resolve().parent.parent
KEPT = ROOT / "docs" / "benchmarks" / "latency"
MACS_DATA = ROOT / "docs" / "benchmarks" / "data"
NETWORKS = ("fmnist-resnet20", "fmnist-vgg", "fmnist-mobilenetv2")
UNREACHABLE = {
    "fmnist-mobilenetv2": "Not run at batch 1: the target is unreachable there. With every unit "
    "at min_keep the network keeps {floor:.3f} of its batch-1 latency on this CPU (measured; "
    "the latency model's median error at batch 1 is {error:.1%}): on its 28×28 input "
    "per-layer overhead, not channels, is the cost. At batch 64 it is reachable: the table "
    "below the others (`--networks fmnist-mobilenetv2 --latency-batch 64 --stages search`).",
}
"""Why a network has no search table at the default latency batch."""


def text_list(text: str) -> list[str]:
    """An argparse type: names, comma-separated."""
    return text.split(",")


def int_list(text: str) -> list[int]:
    """An argparse type: whole numbers, comma-separated."""
    return [int(part) for part in text.split(",")]


@dataclass
class Args:
    """The suite's arguments (``--flag-name`` for each field)."""

    stages: list[str] = arg(
        ["accuracy", "search", "retime", "equal", "apply"], "stages to run", parse=text_list
    )
    networks: list[str] = arg(list(NETWORKS), "env presets", parse=text_list)
    batches: list[int] = arg([1, 64], "batch sizes of the accuracy check", parse=int_list)
    check: int = arg(30, "random candidates per accuracy check")
    target: float = arg(0.5, "latency target of the search stage")
    latency_batch: int = arg(1, "batch size the search's latency budget is measured at")
    threads: int = arg(1, "torch threads for every timing")
    repeats: int = arg(15, "interleaved passes per batch size when re-timing (--stages retime)")
    retime: list[str] = arg(
        ["search", "equal"], "which stages' results --stages retime times again", parse=text_list
    )
    evals: int = arg(50, "full evaluations per method and seed")
    seeds: int = arg(3, "seeds per method")
    finetune_images: int = arg(10_000, "one fine-tuning pass over this many images (0: none)")
    out: Path = arg(ROOT / "results" / "latency-suite", "benchmark folders (not committed)")
    data: Path = arg(KEPT, "where results are kept (committed)")
    markdown: Path = arg(ROOT / "docs" / "latency.md", "the page")
    resume: bool = arg(False, "keep finished results")
    page_only: bool = arg(False, "run nothing: write the page from the kept results")


def _config(env: str, args: Args, target: float, batch: int | None = None) -> Any:
    return load_env_config(
        env,
        {
            "metric": "latency",
            "latency_batch": batch or args.latency_batch,
            "threads": args.threads,
            "target": target,
        },
    )


def accuracy_stage(args: Args) -> None:
    """Build each model afresh and check it on random candidates; keep every row."""
    path = args.data / "accuracy.json"
    rows: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for env in args.networks:
        for batch in args.batches:
            key = f"{env}@b{batch}"
            if args.resume and key in rows:
                continue
            # the task part only: no target check, so no cached model is built first
            task = load_preset_task(_config(env, args, 1.0, batch).task)

            def prune(channels: np.ndarray, task: PruningTask = task) -> torch.nn.Module:
                return task.prune(channels).model

            started = time.perf_counter()
            grids = task.latency_grids()
            model = latency_model(
                task.model,
                task.analysis,
                prune,
                grids,
                batch=batch,
                device=task.device,
                threads=args.threads,
                target=args.target,
                cache=False,
            )
            built = time.perf_counter() - started
            check = check_model(
                model,
                task.model,
                task.analysis,
                prune,
                grids[model.block],
                count=args.check,
            )
            errors = check.errors
            rows[key] = {
                "env": env,
                "batch": batch,
                "threads": model.key.threads,
                "device": model.key.device,
                "torch": model.key.torch,
                "build_s": built,
                "probes": model.probes,
                "pad": model.cost.pad,
                "block": model.block,
                "floor": model.min_ms / model.full_ms,
                "trials": [dataclasses.asdict(t) for t in model.trials],
                "grid": grid_words(model),
                "stated_error": model.error,
                "stated_error_p90": model.error_p90,
                "noise": model.noise,
                "full_ms": model.full_ms,
                "check_n": len(errors),
                "median_error": float(np.median(errors)),
                "p90_error": float(np.percentile(errors, 90)),
                "max_error": float(errors.max()),
                "predicted": list(check.predicted),
                "measured": list(check.measured),
            }
            print(
                f"{key}: built in {built:.1f} s ({grid_words(model)}); median abs "
                f"error {rows[key]['median_error']:.1%} over {len(errors)} candidates",
                flush=True,
            )
            args.data.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=1))


def search_stage(args: Args) -> None:
    """Every default method under the latency budget, kept after every result."""
    for env in args.networks:
        folder = args.out / _search_name(env, args, args.latency_batch)
        if args.resume:
            restore(args.data, folder, ROOT)
            if finished(folder):
                continue
        config = _config(env, args, args.target)
        task = load_task(config, None)
        settings = _settings(args, DEFAULT_METHODS)
        run_kept(task, config, settings, folder, args.data, ROOT, folder.name, resume=args.resume)


def retime_stage(args: Args) -> None:
    """Time every kept search result's network again against the original, interleaved at
    batch 1 and 64, and keep those speedups (marked ``retimed``): a search's own timings
    share the machine with whatever else runs, so this stage is meant for an idle one."""
    for env in args.networks:
        folders = []
        if "search" in args.retime:
            folders += [(args.out / _search_name(env, args, b), b) for b in (1, 64)]
        if "equal" in args.retime:
            folders.append((args.out / f"{env}-eq-b{args.evals}", args.latency_batch))
            _retime_macs_side(env, args)
        for folder, batch in folders:
            restore(args.data, folder, ROOT)
            if not (folder / "benchmark.json").is_file():
                continue
            task = load_preset_task(_config(env, args, 1.0, batch).task)
            retime(folder, task, repeats=args.repeats, threads=args.threads)
            store(folder, args.data, ROOT)


def apply_stage(args: Args) -> None:
    """What ``rlprune apply --metric latency`` delivers on each network at --target and
    --latency-batch, timed against the original at batch 1 and 64 (its own interleaved
    timing, --repeats passes); kept in apply.json under NETWORK-lbBATCH. A target the
    network cannot reach at that batch is kept as the one-line reason apply gives."""
    path = args.data / "apply.json"
    kept: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for env in args.networks:
        key = f"{env}-lb{args.latency_batch}"
        if args.resume and key in kept:
            continue
        started = time.perf_counter()
        try:
            report = apply_policy(
                None,
                _config(env, args, args.target),
                ApplySettings(latency_batches=(1, 64), latency_repeats=args.repeats),
                args.out / "apply" / key,
                overwrite=True,
            )
        except RLPruneError as error:  # e.g. the target is out of reach at this batch
            kept[key] = {"network": env, "latency_batch": args.latency_batch, "error": str(error)}
        else:
            budget = report.latency_budget or {}
            kept[key] = {
                "network": env,
                "latency_batch": args.latency_batch,
                "target": args.target,
                "round_to": budget.get("round_to"),
                "latency_ratio": report.candidate.latency_ratio,
                "predicted_speedup": budget.get("predicted_speedup"),
                "macs_ratio": report.candidate.macs_ratio,
                "val_accuracy": report.candidate.accuracy,
                "speedups": {str(b): v for b, v in report.latency.items()},
                "seconds": time.perf_counter() - started,
            }
        args.data.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(kept, indent=1))
        print(f"{key}: {kept[key].get('speedups') or kept[key].get('error')}", flush=True)


def _retime_macs_side(env: str, args: Args) -> None:
    """The MACs search's ppo bests timed again now, as the latency search's are, so that the
    equal-speed table compares ratios measured in one session (kept in
    equal_retimed.json; the MACs suite's own kept results stay as they are)."""
    macs_folder = args.out / "macs" / f"{env}-t0.5-b50"
    if not restore(MACS_DATA, macs_folder, ROOT):
        return
    task = load_preset_task(_config(env, args, 1.0).task)
    c, h, w = (int(d) for d in task.analysis.input_shape)
    ratios = []
    for result in folder_results(macs_folder):
        if result.method == RECOMMENDED:
            speed = paired_speedups(
                task.model,
                task.prune(result.best.channels).model,
                (c, h, w),
                (args.latency_batch,),
                repeats=args.repeats,
                threads=args.threads,
            )
            ratios.append(1 / speed[args.latency_batch].speedup)
    path = args.data / "equal_retimed.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    kept[env] = round(statistics.mean(ratios), 3)
    path.write_text(json.dumps(kept, indent=1))
    print(f"{env}: the MACs search's ppo bests at {kept[env]:.3f} of the latency", flush=True)


def equal_speed_stage(args: Args) -> None:
    """ppo under a latency budget at the speed the MACs suite's ppo reached."""
    for env in args.networks:
        macs_folder = args.out / "macs" / f"{env}-t0.5-b50"
        if not restore(MACS_DATA, macs_folder, ROOT):
            print(f"{env}: no kept MACs suite result at t0.5-b50; skipped", flush=True)
            continue
        target = _reached_ratio(env, args, macs_folder)
        folder = args.out / f"{env}-eq-b{args.evals}"
        if args.resume:
            restore(args.data, folder, ROOT)
            if finished(folder):
                continue
        config = _config(env, args, target)
        task = load_task(config, None)
        settings = _settings(args, (RECOMMENDED,))
        run_kept(task, config, settings, folder, args.data, ROOT, folder.name, resume=args.resume)


def _reached_ratio(env: str, args: Args, macs_folder: Path) -> float:
    """The latency ratio the MACs search's ppo bests reach, re-timed interleaved now (kept
    so that a resumed stage uses the same target)."""
    path = args.data / "equal_targets.json"
    kept: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}
    if env in kept:
        return kept[env]
    task = load_task(_config(env, args, 1.0), None)
    c, h, w = (int(d) for d in task.analysis.input_shape)
    ratios = []
    for result in folder_results(macs_folder):
        if result.method != RECOMMENDED:
            continue
        pruned = task.prune(result.best.channels).model
        first, second = interleaved_ms(
            task.model, pruned, (c, h, w), args.latency_batch, 20, threads=args.threads
        )
        ratios.append(float(np.median(second) / np.median(first)))
    kept[env] = round(float(np.mean(ratios)), 3)
    args.data.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept, indent=1))
    return kept[env]


def _settings(args: Args, methods: tuple[str, ...]) -> BenchmarkSettings:
    return BenchmarkSettings(
        methods=methods,
        evals=args.evals,
        seeds=args.seeds,
        finetune_epochs=1 if args.finetune_images else 0,
        finetune_images=args.finetune_images or None,
    )


def write_page(args: Args) -> None:
    """docs/latency.md from whatever the kept results hold."""
    lines = [
        "# Latency budget: measured figures",
        "",
        "Regenerate with `python experiments/latency_suite.py --page-only` (seconds, from "
        "the results kept in docs/benchmarks/latency/); `--resume` runs what is missing. "
        f"Software: {', '.join(f'{k} {v}' for k, v in software_versions().items())}.",
        "",
    ]
    lines += _accuracy_section(args)
    lines += _search_section(args)
    lines += _apply_section(args)
    lines += _equal_section(args)
    lines += _vision_section(args)
    args.markdown.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.markdown}")


def _accuracy_section(args: Args) -> list[str]:
    path = args.data / "accuracy.json"
    if not path.is_file():
        return ["## Latency model accuracy", "", "Not measured yet.", ""]
    rows = json.loads(path.read_text())
    out = [
        "## Latency model accuracy",
        "",
        "Each model built afresh (`cache=False`), then checked against random candidates "
        "(a seed the fit did not use) timed interleaved with the original; error = |predicted "
        "− measured| / measured latency ratio. Build time includes pruning every probe.",
        "",
        "| network | batch | threads | build (s) | probes | channel block | stated error "
        "(LOO median / p90) | check: median abs error | p90 | max | original (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows.values():
        out.append(
            f"| {r['env']} | {r['batch']} | {r['threads']} | {r['build_s']:.1f} | {r['probes']} "
            f"| {r['pad']} | {r['stated_error']:.1%} / {r['stated_error_p90']:.1%} | "
            f"**{r['median_error']:.1%}** ({r['check_n']}) | {r['p90_error']:.1%} | "
            f"{r['max_error']:.1%} | {r['full_ms']:.2f} |"
        )
    device = next(iter(rows.values()))["device"]
    out += ["", f"Device: {device}.", ""]
    return out


def _search_name(env: str, args: Args, batch: int) -> str:
    """A search folder's name; a latency batch other than 1 is part of it."""
    return f"{env}-lat{args.target}-b{args.evals}" + (f"-lb{batch}" if batch != 1 else "")


def _search_section(args: Args) -> list[str]:
    out = [f"## Every method at latency target {args.target}", ""]
    path = args.data / "accuracy.json"
    rows: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    for env in args.networks:
        found = False
        for batch in (1, 64):
            folder = args.out / _search_name(env, args, batch)
            restore(args.data, folder, ROOT)
            if not (folder / "benchmark.json").is_file():
                if batch == 1 and env in UNREACHABLE and f"{env}@b1" in rows:
                    row = rows[f"{env}@b1"]
                    note = UNREACHABLE[env].format(floor=row["floor"], error=row["median_error"])
                    out += [f"### {env}", "", note, ""]
                continue
            found = True
            summaries = summarise(folder_results(folder))
            done = "" if finished(folder) else " (unfinished: the seeds run so far)"
            title = f"{env}, latency target {args.target} at batch {batch}{done}"
            table = render_markdown(summaries, title=title)
            out += ["##" + table.split("\n", 1)[0], *table.split("\n", 1)[1].splitlines(), ""]
            files = sorted((folder / "results").glob("*.json"))
            retimed = sum(bool(json.loads(p.read_text()).get("retimed")) for p in files)
            rest = (
                ""
                if retimed == len(files)
                else "; the rest as timed at the end of their search, beside other jobs"
            )
            out += [
                f"Speedups: {retimed} of {len(files)} results re-timed with every other job "
                f"paused (`--stages retime`, {args.repeats} interleaved passes per batch "
                f"size){rest}.",
                "",
                *_curse_line(folder, batch, rows.get(f"{env}@b{batch}")),
            ]
        if not found and env not in UNREACHABLE:
            out += [f"### {env}", "", "Not run yet.", ""]
    return out


def _curse_line(folder: Path, batch: int, accuracy: dict[str, Any] | None) -> list[str]:
    """How far the searches' bests measure from their predicted latency at the budget's
    batch: a search picks where the model errs, so this can exceed the error over random
    candidates (the accuracy check)."""
    errors: dict[str, list[float]] = {}
    for result in folder_results(folder):
        speedup = result.speedup_b1 if batch == 1 else result.latency_speedup
        if speedup and result.latency_ratio:
            measured = 1.0 / speedup
            errors.setdefault(result.method, []).append(measured / result.latency_ratio - 1.0)
    if not errors:
        return []
    every = [e for values in errors.values() for e in values]
    worst = sorted(errors, key=lambda m: -abs(statistics.median(errors[m])))[:2]
    random_error = (
        f"; over random candidates the model's median error is "
        f"{100 * accuracy['median_error']:.1f} %"
        if accuracy
        else ""
    )
    return [
        f"Measured against predicted at batch {batch}: these {len(every)} bests measure "
        f"{100 * min(every):+.1f} % to {100 * max(every):+.1f} % off their predicted latency "
        f"(median |error| {100 * statistics.median(abs(e) for e in every):.1f} %; "
        + ", ".join(f"{m} {100 * statistics.median(errors[m]):+.1f} %" for m in worst)
        + f"){random_error}. A search picks candidates where the model errs.",
        "",
    ]


def _equal_section(args: Args) -> list[str]:
    path = args.data / "equal_targets.json"
    targets = json.loads(path.read_text()) if path.is_file() else {}
    out = [
        "## Equal measured speed: latency-targeted against MACs-targeted search",
        "",
        f"{RECOMMENDED} at MACs target 0.5 (the kept MACs suite, 50 evaluations, 3 seeds) "
        f"against {RECOMMENDED} under a latency budget set to the latency ratio the MACs "
        "search's bests actually reach (re-timed interleaved at the latency batch), both "
        "re-timed in one idle session (`--stages retime --retime equal`, interleaved with the "
        "original, mean over seeds): the two re-timed ratio columns say whether the latency "
        "search's networks are as fast as the MACs search's. Ahead: latency search val minus "
        "MACs search val, in points.",
        "",
        "| network | latency target (= MACs search's measured ratio) | MACs search re-timed "
        "ratio | latency search re-timed ratio | MACs search val | latency search val | ahead | MACs search test (fine-tuned) "
        "| latency search test (fine-tuned) | latency search MACs ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    retimed_path = args.data / "equal_retimed.json"
    retimed = json.loads(retimed_path.read_text()) if retimed_path.is_file() else {}
    ahead = []
    for env in args.networks:
        folder = args.out / f"{env}-eq-b{args.evals}"
        macs_folder = args.out / "macs" / f"{env}-t0.5-b50"
        restore(args.data, folder, ROOT)
        restore(MACS_DATA, macs_folder, ROOT)
        if env not in targets or not (folder / "results").is_dir():
            continue
        results = [r for r in folder_results(folder) if r.method == RECOMMENDED]
        ours = {s.method: s for s in summarise(results)}.get(RECOMMENDED)
        theirs = {s.method: s for s in summarise(folder_results(macs_folder))}.get(RECOMMENDED)
        if ours is None or theirs is None:
            continue

        def pct(stat: Any) -> str:
            return "n/a" if stat is None else f"{100 * stat.mean:.2f} ± {100 * stat.std:.2f}"

        measured = [1 / r.speedup_b1 for r in results if r.speedup_b1]
        gap = 100 * (ours.val_accuracy.mean - theirs.val_accuracy.mean)
        ahead.append(gap > 0)
        out.append(
            f"| {env} | {targets[env]:.3f} | "
            f"{f'{retimed[env]:.3f}' if env in retimed else 'n/a'} | "
            f"{f'{statistics.mean(measured):.3f}' if measured else 'n/a'} | "
            f"{pct(theirs.val_accuracy)} | {pct(ours.val_accuracy)} | {gap:+.2f} | "
            f"{pct(theirs.test_accuracy_finetuned)} | {pct(ours.test_accuracy_finetuned)} | "
            f"{ours.macs_ratio.mean:.3f} |"
        )
    if ahead:
        out += [
            "",
            f"The latency search is ahead on validation accuracy on {sum(ahead)} of "
            f"{len(ahead)} networks.",
        ]
    return [*out, ""]


def _cell(value: float, spread: list[float] | None) -> str:
    """A speedup with its p10–p90 spread, e.g. ``2.04× (1.94–2.23)``."""
    return f"{value:.2f}×" + (f" ({spread[0]:.2f}–{spread[1]:.2f})" if spread else "")


def _paired(speed: dict[str, float]) -> str:
    """:func:`_cell` of a paired timing as apply reports it (speedup, p10, p90)."""
    return _cell(speed["speedup"], [speed["p10"], speed["p90"]])


def _apply_section(args: Args) -> list[str]:
    path = args.data / "apply.json"
    out = [
        "## What `rlprune apply` delivers at latency 0.5",
        "",
        "`python experiments/latency_suite.py --stages apply` (and `--networks "
        "fmnist-mobilenetv2 --latency-batch 64 --stages apply`): `rlprune apply --metric "
        "latency --target 0.5 --threads 1` with the shipped general policy, its delivered "
        "model timed against the original interleaved by apply itself (median, p10–p90 of the "
        "paired speedups).",
        "",
    ]
    if not path.is_file():
        return [*out, "Not run yet.", ""]
    out += [
        "| network | latency batch | channel grid | val acc | MACs ratio | latency ratio "
        "(predicted) | speedup b1 | speedup b64 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in json.loads(path.read_text()).values():
        if "error" in row:
            out.append(f"| {row['network']} | {row['latency_batch']} | | | | | {row['error']} | |")
            continue
        cells = [_paired(row["speedups"][b]) for b in ("1", "64")]
        out.append(
            f"| {row['network']} | {row['latency_batch']} | {row['round_to'] or 1} | "
            f"{100 * row['val_accuracy']:.2f} | {row['macs_ratio']:.3f} | "
            f"{row['latency_ratio']:.3f} | {cells[0]} | {cells[1]} |"
        )
    return [*out, ""]


def _vision_section(args: Args) -> list[str]:
    path = args.data / "vision.json"
    out = [
        "## torchvision at 224x224 (random weights, latency only)",
        "",
        "From `python experiments/latency_vision.py --evals 200`: what `apply` delivers (the "
        "general policy zero-shot, or the uniform allocation or prior when one scores better: "
        "with random weights the scores are noise) and a `ppo` search, at latency target 0.5 "
        "(batch 1); each delivered model timed against the original interleaved; p10–p90 of "
        "the paired speedups in brackets. `ppo` needs more than 50 evaluations here: its "
        "sensitivity probes alone cost 111 on ResNet-50's units.",
        "",
    ]
    if not path.is_file():
        return [*out, "Not run yet.", ""]
    out += [
        "| network | method | channel grid | latency ratio (predicted) | MACs ratio | "
        "speedup b1 | speedup b64 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in json.loads(path.read_text()).values():
        applied, ppo = row["apply"], row["ppo"]
        speed = applied["speedups"]

        out.append(
            f"| {row['network']} | apply (what it delivers) | {row['round_to'] or 1} | "
            f"{applied['latency_ratio']:.3f} | "
            f"{applied['macs_ratio']:.3f} | "
            f"{_paired(speed['1'])} | {_paired(speed['64'])} |"
        )
        if ppo is None:
            continue
        spread = ppo["spread"] or {}
        out.append(
            f"| {row['network']} | ppo ({ppo.get('evals', 'n/a')} evaluations) | "
            f"{row['round_to'] or 1} | {ppo['latency_ratio']:.3f} | "
            f"{ppo['macs_ratio']:.3f} | {_cell(ppo['speedup_b1'], spread.get('1'))} | "
            f"{_cell(ppo['speedup_b64'], spread.get('64'))} |"
        )
    first = next(iter(json.loads(path.read_text()).values()))
    out += [
        "",
        f"Device {first['device']}, {first['threads']} thread(s), torch {first['torch']}.",
        "",
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the requested stages (unless --page-only), then write the page."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    if not args.page_only:
        stages = {
            "accuracy": accuracy_stage,
            "search": search_stage,
            "retime": retime_stage,
            "equal": equal_speed_stage,
            "apply": apply_stage,
        }
        for stage in args.stages:
            stages[stage](args)
            write_page(args)
    write_page(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
