"""Pick a family run's checkpoint by how it plays networks outside its family.

    python experiments/select_checkpoint.py --runs runs/skew-s0/family__ppo__0__... \\
        --select-on fmnist-cnn,fmnist-mobilenetv1 \\
        --report fmnist-vgg,fmnist-mobilenetv2,examples/fmnist-custom.yaml \\
        --targets 0.3,0.5,0.7 [--export runs/skew-s0/selected]

Every checkpoint of every run plays its own corrections once (deterministic, probes +
1 evaluation) on the ``--select-on`` networks, which should lie outside both the training
family and the networks the policy will be judged on. A checkpoint's score is its mean
validation accuracy minus the prior's there, over those networks and the run's targets
(a single-target run plays only its own target). Each run's best-scoring checkpoint is
its pick; ``--export`` writes it as a policy folder (one run only). With ``--report``, the
same is measured on the networks the policy is judged on, and the Spearman correlation
between the two scores over all checkpoints says whether the selection networks predict
them. With ``--out FILE``, scores are appended to FILE as they come and a rerun reads them
back instead of playing those checkpoints again (the logic: :mod:`rlprune.selection`).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from rlprune.arguments import arg, parse
from rlprune.errors import run_script
from rlprune.selection import Boards, export_pick, score_runs

ROOT = Path(__file__).resolve().parent.parent


def episode_range(text: str) -> tuple[int, int]:
    """An argparse type: ``LOW:HIGH``, a range of episodes (both included)."""
    try:
        low, high = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give LOW:HIGH, e.g. 100:210, got {text!r}") from None
    return low, high


@dataclass
class Args:
    """The selection's arguments (``--flag-name`` for each field)."""

    runs: list[Path] = arg(help="run folders made by rlprune train --checkpoint-every", nargs="+")
    select_on: str = arg(help="networks to select on, a,b,...")
    report: str = arg("", "networks to report on, a,b,...")
    targets: str = arg("0.3,0.5,0.7", "targets each checkpoint is played at, a,b,...")
    export: Path | None = arg(None, "write the pick as a policy (one run)")
    out: Path | None = arg(
        None, "JSON-lines file of scores: appended as they come, reused on rerun"
    )
    episodes: tuple[int, int] | None = arg(
        None,
        "LOW:HIGH, score only the checkpoints taken within these episodes",
        parse=episode_range,
    )


def main(argv: list[str] | None = None) -> int:
    """Score every checkpoint, print one line each and each run's pick."""
    args = parse(
        Args,
        argv,
        description=__doc__.splitlines()[0],
        check=lambda a: (
            "--export writes one run's pick; give one --runs folder"
            if a.export and len(a.runs) != 1
            else None
        ),
    )
    select = [n for n in args.select_on.split(",") if n]
    report = [n for n in args.report.split(",") if n]
    targets = [float(t) for t in args.targets.split(",")]
    scored, picks = score_runs(
        args.runs,
        select,
        report,
        targets,
        boards=Boards(ROOT),
        results=args.out,
        on_scored=lambda item: print(item.line(), flush=True),
        on_skipped=lambda run: print(f"{run}: trained for a target not in --targets; skipped"),
        episodes=args.episodes,
    )
    for run, item in picks.items():
        shown = f", report-prior {item.report:+.2f}" if item.report is not None else ""
        print(f"pick {run}: {item.checkpoint} (select-prior {item.select:+.2f}{shown})")
    if report and len(scored) > 2:
        from scipy.stats import spearmanr

        rho = spearmanr([s.select for s in scored], [s.report for s in scored]).statistic
        print(f"spearman(select, report) over {len(scored)} checkpoints: {rho:.2f}")
    if args.export and picks:
        (item,) = picks.values()
        print(f"policy: {export_pick(item, select, args.export)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
