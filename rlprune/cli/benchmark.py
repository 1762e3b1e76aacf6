"""``rlprune benchmark``: search methods compared at equal cost."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ..errors import RunError, stop_status
from ..files import check_output_dir, safe_name
from ..search.methods import DEFAULT_METHODS, TRANSFER_METHODS, methods_help
from .common import (
    NON_NEGATIVE,
    POSITIVE,
    add_env_arguments,
    add_trust_argument,
    add_worker_arguments,
    console,
    env_config_from_args,
    err_console,
    use_workers,
)

if TYPE_CHECKING:
    from ..evaluation.task import PruningTask
    from ..mdp.settings import EnvConfig
    from ..reports.tables import MethodSeedResult
    from ..search.benchmark import BenchmarkSettings


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Compare search methods at equal cost; write tables and plots."""
    from ..presets.tasks import load_task
    from ..search.benchmark import benchmark_config

    use_workers(args)
    config = env_config_from_args(args)
    settings = _benchmark_settings(args)
    out = Path(args.out) if args.out else Path("results") / f"benchmark-{safe_name(config.name)}"
    check_output_dir(out)
    config = benchmark_config(config, args.policy)
    task = load_task(config)
    try:
        files = _run_with_progress(task, settings, out, config, args)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or SIGTERM (rlprune.cli.main)
        err_console.print(
            f"interrupted: finished (method, seed) results are kept in {out}/results; "
            "run the same command with --resume to compute only the missing ones",
            highlight=False,
        )
        return stop_status(interrupt)
    console.print(files["summary.md"].read_text(), highlight=False, markup=False)
    plots = [p for k, p in files.items() if str(p).endswith(".png")]
    console.print(
        f"tables and plots in {out}: " + ", ".join(p.name for p in plots), highlight=False
    )
    return 0


def _benchmark_settings(args: argparse.Namespace) -> BenchmarkSettings:
    """The methods and settings the flags ask for; sets ``args.policy`` when transfer needs one."""
    from ..search.benchmark import BenchmarkSettings

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise RunError(f"--methods {args.methods!r} names no method; e.g. --methods ppo,random")
    if args.policy and not set(TRANSFER_METHODS) & set(methods):
        # --policy adds the transfer methods (zero-shot; adapted and refined when asked)
        adapted = ["transfer-adapt", "transfer-refine"] if args.adapt_episodes else []
        methods += ["transfer", *adapted]
    if args.policy is None and set(TRANSFER_METHODS) & set(methods):
        from ..apply import default_policy

        args.policy = str(default_policy())  # the bundled general policy
    return BenchmarkSettings(
        methods=tuple(methods),
        evals=args.evals,
        seeds=args.seeds,
        finetune_epochs=args.finetune_epochs,
        finetune_images=args.finetune_images,
        proxy_candidates=args.proxy_candidates,
        policy=args.policy,
        adapt_episodes=args.adapt_episodes,
        trust=args.trust,
    )


def _run_with_progress(
    task: PruningTask,
    settings: BenchmarkSettings,
    out: Path,
    config: EnvConfig,
    args: argparse.Namespace,
) -> dict[str, Path]:
    """Run the benchmark under a progress bar that prints each (method, seed) as it ends."""
    from ..search.benchmark import run_benchmark

    total = len(settings.methods) * max(settings.seeds, 1)
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    bar = progress.add_task("benchmark", total=total)

    def started(method: str, seed: int) -> None:
        progress.update(bar, description=f"{method} seed {seed}")

    def finished(result: MethodSeedResult, done: int, _total: int) -> None:
        progress.update(bar, completed=done)
        progress.console.print(
            f"{result.method:>15} seed {result.seed}: val {result.val_accuracy:.4f} "
            f"test {result.test_accuracy:.4f} MACs {result.macs_ratio:.3f} "
            f"evals {result.evaluations} ({result.wall_time_s:.0f}s)",
            highlight=False,
        )

    with progress:
        _, files = run_benchmark(
            task,
            settings,
            out,
            config=config,
            overwrite=args.overwrite,
            resume=args.resume,
            on_result=finished,
            on_start=started,
        )
    return files


def add_parser(sub: Any, debug: argparse.ArgumentParser) -> None:
    """Add the ``benchmark`` command to ``sub`` (the subparsers of ``rlprune``)."""
    bm = sub.add_parser(
        "benchmark", parents=[debug], help="compare agents and baselines at equal search cost"
    )
    add_env_arguments(bm)
    bm.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=methods_help(),
    )
    bm.add_argument("--evals", type=POSITIVE, default=100, help="candidate evaluations per method")
    bm.add_argument("--seeds", type=POSITIVE, default=1, help="seeds per method")
    bm.add_argument(
        "--finetune-epochs", type=NON_NEGATIVE, default=0, help="fine-tune every method's best"
    )
    bm.add_argument(
        "--finetune-images",
        type=POSITIVE,
        help="fine-tune on at most this many training images (e.g. 10000: one short pass)",
    )
    bm.add_argument(
        "--proxy-candidates",
        type=NON_NEGATIVE,
        default=0,
        help="fine-tune this many evaluated candidates and report the Spearman correlation "
        "of validation accuracy with fine-tuned test accuracy (e.g. 20)",
    )
    bm.add_argument(
        "--policy",
        help="a policy trained elsewhere: adds the transfer (and, with --adapt-episodes, "
        "transfer-adapt and transfer-refine) methods (default for those methods: the bundled "
        "general policy)",
    )
    bm.add_argument(
        "--adapt-episodes",
        type=NON_NEGATIVE,
        default=0,
        help="episodes for transfer-adapt, evaluations for transfer-refine and "
        "transfer-apply-refine",
    )
    add_trust_argument(bm)
    add_worker_arguments(bm)
    bm.add_argument("--out", help="output folder (default: results/benchmark-{env})")
    bm.add_argument("--overwrite", action="store_true", help="replace an existing benchmark")
    bm.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted benchmark, or add seeds to one (the same command with "
        "a larger --seeds: the kept seeds stand)",
    )
    bm.set_defaults(func=cmd_benchmark)
