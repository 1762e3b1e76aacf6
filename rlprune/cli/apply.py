"""``rlprune apply``: prune a model with a saved policy, export and report it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import stop_status
from .common import (
    NON_NEGATIVE,
    add_env_arguments,
    add_trust_argument,
    add_worker_arguments,
    console,
    env_config_from_args,
    err_console,
    seed_value,
    stage_progress,
    use_workers,
)

if TYPE_CHECKING:
    from rich.progress import TaskID

    from ..apply import ApplySettings
    from ..evaluation.candidates import Candidate
    from ..mdp.settings import EnvConfig
    from ..reports.apply_report import ApplyReport
    from ..rl.recorder import RunRecorder


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply a saved policy to a model and export the pruned model with a report."""
    from ..apply import ApplySettings
    from ..rl.run import run_folder_name

    use_workers(args)
    config = env_config_from_args(args)
    settings = ApplySettings(
        target=args.target,
        adapt_episodes=args.adapt_episodes,
        refine=args.refine,
        finetune_epochs=args.finetune_epochs,
        seed=args.seed,
        trust=args.trust,
    )
    out = (
        Path(args.out)
        if args.out
        else Path("runs") / run_folder_name(config.name, "apply", args.seed)
    )
    try:
        report = _apply_with_progress(args, config, settings, out)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (rlprune.cli.main)
        err_console.print(
            f"interrupted: nothing was written to {out}; run the command again", soft_wrap=True
        )
        return stop_status(interrupt)
    _print_results(report)
    _print_policy_fit(report)
    console.print(f"report and pruned model: {out}", highlight=False)
    return 0


def _apply_with_progress(
    args: argparse.Namespace, config: EnvConfig, settings: ApplySettings, out: Path
) -> ApplyReport:
    """:func:`rlprune.apply.apply_policy` with its stage on one line and, while adapting or
    refining, a bar of its own; all of it cleared at the end (nothing stale in a pipe)."""
    from ..apply import apply_policy

    progress = stage_progress()
    stage = progress.add_task("starting", total=None, bar=False, status="")
    bars: dict[str, TaskID] = {}

    def bar(label: str, total: int) -> TaskID:
        if label not in bars:
            bars[label] = progress.add_task(label, total=total, bar=True, status="")
        return bars[label]

    def on_episode(recorder: RunRecorder) -> None:
        best = recorder.best
        status = (
            f"best acc {best.candidate.accuracy:.4f} @ MACs {best.candidate.macs_ratio:.3f}"
            if best
            else ""
        )
        task = bar("adapt", settings.adapt_episodes)
        progress.update(task, completed=recorder.episodes, status=status)

    def on_refine(done: float, best: Candidate) -> None:
        status = f"best acc {best.accuracy:.4f} @ MACs {best.macs_ratio:.3f}"
        progress.update(bar("refine", settings.refine), completed=done, status=status)

    with progress:
        return apply_policy(
            args.policy,
            config,
            settings,
            out,
            on_episode=on_episode,
            on_stage=lambda msg: progress.update(stage, description=msg),
            on_refine=on_refine,
            overwrite=args.overwrite,
        )


def _print_results(report: ApplyReport) -> None:
    """Print what pruning delivered: MACs, params, accuracy, latency and the refinement."""
    from ..reports.apply_report import format_count, latency_budget_words
    from ..reports.latency import NOISY_SPREAD, noise_mark, speed_words

    console.print(
        f"MACs {format_count(report.macs_before)} → {format_count(report.macs_after)} "
        f"({report.macs_ratio:.3f}×), params {report.params_ratio:.3f}×; "
        f"val acc {report.val_accuracy_before:.4f} → {report.val_accuracy_after:.4f}, "
        f"test acc {report.test_accuracy_before:.4f} → {report.test_accuracy_after:.4f}"
        + (
            f" (fine-tuned {report.test_accuracy_finetuned:.4f})"
            if report.finetuned_delivered and report.test_accuracy_finetuned is not None
            else ""
        ),
        highlight=False,
    )
    if report.scored:
        console.print(report.choice_words(), highlight=False, soft_wrap=True)
    if report.finetuned:
        console.print(report.finetune_words(), highlight=False, soft_wrap=True)
    timed = [("CPU", report.latency), (report.device, report.latency_gpu or {})]
    for where, rows in timed:
        for batch, row in sorted(rows.items()):
            console.print(
                f"{where} latency batch {batch}: {row['before_ms']:.2f} ms → "
                f"{row['after_ms']:.2f} ms ({speed_words(row['speedup'])}"
                + (f", p10–p90 {row['p10']:.2f}–{row['p90']:.2f}×)" if "p10" in row else ")")
                + noise_mark(row),
                highlight=False,
            )
    if report.noisy_latency:
        console.print(
            f"(noisy): the paired passes' speedups spread more than {NOISY_SPREAD}× (p90/p10); "
            "time again on an idle machine or with --threads 1",
            highlight=False,
        )
    if report.latency_budget:
        console.print(latency_budget_words(report.latency_budget), highlight=False)
    if report.refine_evaluations:
        console.print(
            f"refined with {report.refine_evaluations} evaluations: "
            + (
                "a better configuration was found and delivered"
                if report.refine_improved
                else f"none beat the {report.choice} configuration, which was delivered"
            ),
            highlight=False,
        )


def _print_policy_fit(report: ApplyReport) -> None:
    """Print the policy's family and whether this model lay inside its training ranges."""
    family = ", ".join(report.policy_family)
    console.print(f"policy: {report.policy} (trained on {family})", highlight=False, soft_wrap=True)
    if report.outside_family:
        console.print(
            "outside the policy's training ranges: "
            + "; ".join(
                f"{o['feature']} on {o['steps']}/{len(report.units)} units (up to "
                f"{o['distance']:.2f} beyond)"
                for o in report.outside_family
            )
            + ("" if report.refine_evaluations else " — consider --refine 20"),
            highlight=False,
            soft_wrap=True,
        )
        if report.deferred:
            console.print(
                f"so the zero-shot episode played {report.played()} (--trust always plays "
                "its corrections in full)",
                highlight=False,
                soft_wrap=True,
            )
    elif report.policy_ranges:
        console.print("every observation lies inside the policy's training ranges", highlight=False)


def add_parser(sub: Any, debug: argparse.ArgumentParser) -> None:
    """Add the ``apply`` command to ``sub`` (the subparsers of ``rlprune``)."""
    ap = sub.add_parser(
        "apply", parents=[debug], help="prune a model with a saved policy and export it"
    )
    ap.add_argument(
        "--policy",
        help="policy folder or the run folder holding it (default: the bundled general "
        "policy, trained across a family of networks and targets 0.3-0.7)",
    )
    add_env_arguments(ap)
    ap.add_argument(
        "--adapt-episodes", type=NON_NEGATIVE, default=0, help="keep training on this model first"
    )
    ap.add_argument(
        "--refine",
        type=NON_NEGATIVE,
        default=0,
        metavar="N",
        help="then spend N evaluations on a TPE search within 0.25 keep-ratio of the policy's "
        "configuration (e.g. 20): three quarters screen trials on a quarter of the validation "
        "set each, the rest score the best screened in full; the best one found is delivered",
    )
    ap.add_argument(
        "--finetune-epochs",
        type=NON_NEGATIVE,
        default=0,
        help="fine-tune the pruned model on train",
    )
    ap.add_argument(
        "--seed", type=seed_value, default=0, help="seed of adaptation and refinement (default: 0)"
    )
    add_trust_argument(ap)
    add_worker_arguments(ap)
    ap.add_argument("--out", help="output folder (default: runs/{env}__apply__{seed}__{time})")
    ap.add_argument(
        "--overwrite", action="store_true", help="replace an earlier apply's files in --out"
    )
    ap.set_defaults(func=cmd_apply)
