"""``rlprune info`` and ``rlprune pretrain``: a preset's units, and its base model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.progress import (
    Progress,
)
from rich.table import Table

from ..evaluation.latency import grid_words
from ..files import safe_name
from .common import (
    NON_NEGATIVE,
    POSITIVE,
    LogLines,
    add_env_arguments,
    command_line,
    console,
    env_config_from_args,
)

if TYPE_CHECKING:
    from ..evaluation.task import PruningTask


def cmd_info(args: argparse.Namespace) -> int:
    """Print the prunable units of a preset's model."""
    from ..presets.tasks import load_task
    from ..reports.apply_report import format_count

    config = env_config_from_args(args)
    if args.latency and config.task.metric != "latency":
        config = config.derive({"metric": "latency"})
    # checking the latency model is no search: the preset's target need not be reachable
    task = load_task(config.task if args.latency else config)
    task.latency_target = config.env.target.low  # the grid and focus of a latency model
    task.prepare_budget()  # under a latency budget: the latency model (and round_to)
    analysis = task.analysis
    table = Table(title=f"{config.name}: {config.task.model} on {config.task.dataset}")
    for column in ("#", "unit", "kind", "channels", "kernel", "stride", "input", "MACs share"):
        table.add_column(column, justify="right" if column not in ("unit", "kind") else "left")
    for u in analysis.units:
        layers = u.name if len(u.modules) == 1 else f"{u.name} (+{len(u.modules) - 1} tied)"
        table.add_row(
            str(u.index),
            layers,
            u.kind,
            f"{u.in_channels} → {u.out_channels}",
            str(u.kernel),
            str(u.stride),
            f"{u.input_hw[0]}×{u.input_hw[1]}",
            f"{u.macs / analysis.macs:.1%}",
        )
    console.print(table)
    for name, why in analysis.frozen:
        console.print(f"frozen: {name}: keeps all its channels ({why})", markup=False)
    console.print(
        f"MACs: {format_count(analysis.macs)}   params: {format_count(analysis.params)}   "
        f"units: {len(analysis.units)}"
        + (f" (+{len(analysis.frozen)} frozen)" if analysis.frozen else "")
        + f"   smallest reachable target: {task.min_macs_ratio:.3f} "
        f"(min_keep={config.task.min_keep})   MACs model: "
        f"{'exact' if analysis.mac_model.exact else 'approximate (measured and repaired)'}"
    )
    if task.latency is not None:
        console.print(
            f"latency budget: smallest reachable target {task.min_budget_ratio:.3f}; "
            f"{grid_words(task.latency)}: "
            + (
                f"channel counts are kept in multiples of {task.config.round_to}"
                if (task.config.round_to or 1) > 1
                else "channel counts are not rounded"
            )
            + " (round_to; set it to override)"
        )
    console.print(f"validation accuracy (unpruned): {task.base_accuracy():.4f}")
    if args.latency:
        _print_latency_check(task, args.latency)
    return 0


def _print_latency_check(task: PruningTask, count: int) -> None:
    """The latency model against ``count`` freshly timed random candidates."""
    check = task.check_latency(count)
    latency = task.latency
    assert latency is not None
    errors = check.errors
    console.print(
        f"latency model check ({latency.key.device}, batch {latency.key.batch}, "
        f"{latency.key.threads} thread(s)): {count} random candidates timed interleaved with "
        f"the original in {check.seconds:.0f} s; predicted against measured latency ratio: "
        f"median abs error {check.median_error:.1%}, p90 {np.percentile(errors, 90):.1%}, "
        f"max {errors.max():.1%} (stated {latency.error:.1%}); smallest reachable latency "
        f"target {task.min_budget_ratio:.3f}"
    )


def cmd_pretrain(args: argparse.Namespace) -> int:
    """Train and save the base model of a preset."""
    from ..pretrain import check_weights_target, pretrain

    config = env_config_from_args(args)
    out = Path(args.out) if args.out else Path("pretrained") / f"{safe_name(config.name)}.pt"
    check_weights_target(out, overwrite=args.overwrite)  # before any training
    epochs = args.epochs if args.epochs is not None else int(config.task.pretrain.get("epochs", 10))
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"pretrain {config.name} ({epochs} epochs)", total=None)
        log = LogLines(f"pretrain {config.name}")

        def on_epoch(epoch: int, loss: float) -> None:
            progress.update(
                bar, description=f"pretrain {config.name} epoch {epoch} loss {loss:.3f}"
            )

        def on_step(done: int, steps: int) -> None:
            progress.update(bar, completed=done, total=steps)
            log(done, steps, "batches")

        path, result = pretrain(
            config.task,
            epochs=args.epochs,
            out=out,
            overwrite=args.overwrite,
            command=command_line(),
            on_epoch=on_epoch,
            on_step=on_step,
        )
    console.print(
        f"saved {path}  val acc {result.val_accuracy:.4f}  test acc {result.test_accuracy:.4f}  "
        f"({result.epochs} epochs, {result.seconds:.0f}s); use it with --weights {path}"
    )
    return 0


def add_parser(sub: Any, debug: argparse.ArgumentParser) -> None:
    """Add the ``info`` commands to ``sub`` (the subparsers of ``rlprune``)."""
    info = sub.add_parser("info", parents=[debug], help="print a model's prunable units and MACs")
    add_env_arguments(info)
    info.add_argument(
        "--latency",
        type=POSITIVE,
        nargs="?",
        const=30,
        default=0,
        metavar="N",
        help="build the latency model (--metric latency) and check it against N freshly "
        "timed random candidates (default N: 30)",
    )
    info.set_defaults(func=cmd_info)

    pre = sub.add_parser(
        "pretrain", parents=[debug], help="train and save the base model of a preset"
    )
    add_env_arguments(pre, search=False)
    pre.add_argument("--epochs", type=NON_NEGATIVE, help="training epochs (default: the preset's)")
    pre.add_argument(
        "--out", help="where to save the weights (default: pretrained/{env}.pt in this folder)"
    )
    pre.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing weights file (e.g. regenerate the bundled weights/*.pt)",
    )
    pre.set_defaults(func=cmd_pretrain)
