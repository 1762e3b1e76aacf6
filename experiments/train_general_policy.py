"""Train a general policy across a family (what ``rlprune apply`` uses without ``--policy``).

One PPO agent (the default ``ppo`` preset: feature set 2, corrections to the sensitivity
prior) trained across a family of networks at MACs targets 0.30-0.70, then copied into
``policies/general`` (the package's bundled policy) with ``--install``::

    python experiments/train_general_policy.py --episodes 1500 --install

The bundled policy is an ensemble of three such runs (seeds 3-5, 400 episodes each, low
targets drawn more often: ``--targets 0.3,0.3,0.35,0.35,0.4,0.4,0.45,0.5,0.55,0.6,0.65,0.7
--episodes 400 --seed S``), bundled and given its off-family strength by
``experiments/bundle_policy.py --members R3 R4 R5 --select-on fmnist-cnn,fmnist-mobilenetv1
--install``; its metadata records every command.

It is the same as ``rlprune train --env fmnist-resnet20,fmnist-resnet14-w24,... --target
0.3:0.7 --episodes N`` followed by a copy. The family leaves out every network the transfer
table tests on (fmnist-vgg, fmnist-mobilenetv2, examples/fmnist-custom.yaml), so that table
measures the shipped policy on networks it never saw.

With ``--select-on NET1,NET2`` (networks outside both the family and the transfer table),
the run checkpoints every ``--checkpoint-every`` episodes (default 50) and the checkpoint
that plays those networks best against the prior (:mod:`rlprune.selection`) is
exported to ``RUN/selected`` and is what ``--install`` copies: longer training fits the
family and transfers worse, and the selection networks rank checkpoints the way unseen
networks do. Scores go to ``RUN/selection.jsonl``; rerunning the same selection reads them
back (``python experiments/select_checkpoint.py --runs RUN --select-on ... --out ...``).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlprune.arguments import arg, parse
from rlprune.cli import main as rlprune_main
from rlprune.errors import run_script
from rlprune.presets.loader import GENERAL_POLICY
from rlprune.rl.policy import install_policy
from rlprune.selection import Boards, export_pick, score_runs

ROOT = Path(__file__).resolve().parent.parent

FAMILY = ("fmnist-resnet20", "fmnist-resnet14-w24", "fmnist-resnet32-w12", "fmnist-regnet")
"""The training family: ResNets of three depths/widths and a RegNetX (grouped convs)."""
WIDE = ("fmnist-ghostnet", "fmnist-convmixer", "fmnist-mobilenetv1", "fmnist-mobilenetv1-w")
"""A wider family none of the torchvision zoo's families is in (docs/zoo.md): ghost modules
(concatenated depthwise copies, squeeze-excite), isotropic 7x7 depthwise layers, plain
depthwise-separable stacks up to 512 channels, at 28 and 32 px. Out: ResNets, RegNets, VGG,
MobileNetV2/V3, every other family of the zoo (``--family`` takes it as ``wide``)."""
HELD_OUT = ("fmnist-vgg", "fmnist-mobilenetv2", "examples/fmnist-custom.yaml")
"""Networks the general policy never sees in training (the transfer table's rows)."""


@dataclass
class Args:
    """The training's arguments (``--flag-name`` for each field)."""

    family: str = arg(",".join(FAMILY), "comma-separated env presets (`wide`: the family of WIDE)")
    target: str = arg("0.3:0.7", "a target or LOW:HIGH")
    targets: str | None = arg(
        None, "instead of --target, the targets listed (repeats drawn more often)"
    )
    episodes: int = arg(1500, "PPO episodes across the family")
    seed: int = arg(0, "the training seed")
    agent: str = arg("ppo", "agent preset")
    out: Path = arg(ROOT / "runs" / "general", "where the run folder goes")
    install: bool = arg(False, f"copy the policy to {GENERAL_POLICY}")
    checkpoint_every: int | None = arg(
        None, "episodes between checkpoints (default with --select-on: 50)"
    )
    select_on: str = arg("", "pick the checkpoint that plays these networks best")
    select_targets: str = arg("0.3,0.5,0.7", "targets the pick is scored at")

    @property
    def select(self) -> list[str]:
        """The networks to select on."""
        return [n for n in self.select_on.split(",") if n]

    @property
    def every(self) -> int | None:
        """Episodes between checkpoints: 50 by default when a checkpoint is picked."""
        return 50 if self.checkpoint_every is None and self.select else self.checkpoint_every


def check(args: Args) -> str | None:
    """Settings that would fail, refused before training rather than after it."""
    if args.every is not None and args.every < 1:
        return "--checkpoint-every must be a positive number of episodes"
    targets = [float(t) for t in args.select_targets.split(",")]
    trained = set(args.targets.split(",")) if args.targets else {args.target}
    (first, *_) = trained
    if args.select and len(trained) == 1 and ":" not in first and float(first) not in targets:
        return f"the run's target {first} is not among --select-targets; add it there"
    return None


def main(argv: list[str] | None = None) -> int:
    """Train the family policy; with ``--install``, replace ``policies/general`` with it."""
    args = parse(Args, argv, description=__doc__.splitlines()[0], check=check)
    if args.family == "wide":
        args.family = ",".join(WIDE)
    select, every = args.select, args.every
    targets = [float(t) for t in args.select_targets.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=args.out, prefix="run-"))
    command = [
        "train",
        "--env",
        args.family,
        *(["--targets", args.targets] if args.targets else ["--target", args.target]),
        "--episodes",
        str(args.episodes),
        "--seed",
        str(args.seed),
        "--agent",
        args.agent,
        "--out",
        str(staging),
        *(["--checkpoint-every", str(every)] if every else []),
    ]
    sys.argv = ["rlprune", *command]  # the policy records the equivalent rlprune command
    code = rlprune_main(command)
    if code != 0:
        return code
    (run_dir,) = [p for p in staging.iterdir() if p.is_dir()]
    print(f"run folder: {run_dir}")
    chosen = run_dir / "policy"
    if select:
        _, picks = score_runs(
            [run_dir],
            select,
            [],
            targets,
            boards=Boards(ROOT),
            results=run_dir / "selection.jsonl",
            on_scored=lambda item: print(item.line(), flush=True),
        )
        item = picks[run_dir]
        chosen = export_pick(item, select, run_dir / "selected")
        print(f"pick: {item.checkpoint} (select-prior {item.select:+.2f}): {chosen}")
    if args.install:
        print(f"installed: {install_policy(chosen, GENERAL_POLICY)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
