"""Bundle family policies into one ensemble and choose how strongly it plays off-family.

    python experiments/bundle_policy.py --members runs/skew400-s3/RUN runs/skew400-s4/RUN \\
        runs/skew400-s5/RUN --select-on fmnist-cnn,fmnist-mobilenetv1 \\
        --targets 0.3,0.5,0.7 --scales 0,0.25,0.5,0.75,1 --out runs/bundle [--install]

The members (policy folders or run folders, all trained alike: same feature set, prior and
agent) become one policy that plays the mean of their actions (``save_ensemble``). On a
network outside the training ranges, ``rlprune apply`` (``--trust family``) plays its
corrections to the prior damped to a strength; this script picks that strength: each of
``--scales`` plays the ensemble once (probes + 1 evaluation) on every ``--select-on``
network at every target, and the best mean accuracy gain over the prior wins (0, the prior
alone, unless some strength beats it; the weaker on a tie). The selection networks should
lie outside both the training family and the networks the policy will be judged on. The
scores go into the policy's metadata (``outside_scale``, ``scale_selection``), each as it
is measured: interrupted, the bundle left behind is valid, plays the prior alone off-family
and keeps the scores so far (marked ``unfinished``);
``--install`` copies the bundle to ``policies/general`` (what ``rlprune apply`` uses
without ``--policy``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlprune.arguments import arg, parse
from rlprune.cli import fraction_list
from rlprune.errors import ConfigError, run_script
from rlprune.files import atomic_write_json
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config
from rlprune.rl.policy import install_policy, load_policy, resolve_policy_dir, save_ensemble
from rlprune.selection import Boards, Scored, pick_scale

ROOT = Path(__file__).resolve().parent.parent


def strengths(text: str) -> list[float]:
    """An argparse type: strengths in [0, 1], comma-separated (0 plays the prior alone)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected strengths in [0, 1] separated by commas, such as 0,0.5,1, got {text!r}"
        )
    return values


@dataclass
class Args:
    """The bundle's arguments (``--flag-name`` for each field)."""

    members: list[Path] = arg(
        help="the members: policy folders or run folders, all trained alike", nargs="+"
    )
    select_on: str = arg(help="networks to select on, a,b,...")
    out: Path = arg(help="the bundle's policy folder")
    targets: list[float] = arg(
        [0.3, 0.5, 0.7], "targets each strength is played at, a,b,...", parse=fraction_list
    )
    scales: list[float] = arg(
        [0, 0.25, 0.5, 0.75, 1],
        "strengths to try, a,b,... (0: the prior alone, 1: the corrections in full)",
        parse=strengths,
    )
    install: bool = arg(False, f"copy the bundle to {GENERAL_POLICY}")


def check_bundle(members: list[Path], out: Path, select: list[str]) -> None:
    """Refuse, before anything is written, a member given twice, an ``--out`` that would
    overwrite a member, and ``--select-on`` networks that are no env preset.

    Raises:
        ConfigError: naming the argument and the fix.
    """
    folders = [resolve_policy_dir(m).resolve() for m in members]
    seen = set(folders)
    if len(seen) < len(folders):
        twice = next(str(m) for m, f in zip(members, folders, strict=True) if folders.count(f) > 1)
        raise ConfigError(f"--members names {twice} twice; give each policy once")
    target = out.resolve()
    for member, folder in zip(members, folders, strict=True):
        if target in (folder, folder.parent):
            raise ConfigError(
                f"--out {out} would overwrite the member {member}; give the bundle a folder "
                "of its own"
            )
    if not select:
        raise ConfigError("no networks to select on; give --select-on NET1,NET2,...")
    for name in select:
        load_env_config(env_spec(name, ROOT))  # an unknown preset fails here, in one line


def main(argv: list[str] | None = None) -> int:
    """Write the ensemble with its chosen off-family strength; print every strength's score."""
    args = parse(
        Args,
        argv,
        description=__doc__.splitlines()[0],
        check=lambda a: (
            "--members: an ensemble needs at least two policies" if len(a.members) < 2 else None
        ),
    )
    select = [n for n in args.select_on.split(",") if n]
    check_bundle(args.members, args.out, select)
    members = [load_policy(m) for m in args.members]
    # written first, playing the prior alone off-family: valid whatever happens next
    out = save_ensemble(members, args.out, {"outside_scale": 0.0})
    ensemble = load_policy(out)
    meta = json.loads((out / "policy.json").read_text())
    command = " ".join(["python", "experiments/bundle_policy.py", *(argv or sys.argv[1:])])
    done: list[Scored] = []

    def selection(finished: bool) -> dict[str, Any]:
        gains = {s.checkpoint.removeprefix("scale "): round(s.select, 4) for s in done}
        record = {"select_on": select, "targets": args.targets, "gain_over_prior": gains}
        return {**record, "command": command, **({} if finished else {"unfinished": True})}

    def keep(item: Scored) -> None:
        """Each strength's score into the bundle's metadata as it comes (an interrupted
        selection keeps what it measured), then onto the screen."""
        done.append(item)
        atomic_write_json(out / "policy.json", {**meta, "scale_selection": selection(False)})
        print(item.line(), flush=True)

    scale, _ = pick_scale(
        ensemble, select, args.targets, args.scales, boards=Boards(ROOT), on_scored=keep
    )
    save_ensemble(members, out, {"outside_scale": scale, "scale_selection": selection(True)})
    print(f"off-family strength: {scale:g}; ensemble of {len(members)}: {out}")
    if args.install:
        print(f"installed: {install_policy(out, GENERAL_POLICY)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
