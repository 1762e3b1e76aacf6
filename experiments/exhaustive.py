"""The best configuration of a small network at a target, by scoring every one on the frontier.

    python experiments/exhaustive.py --env examples/fmnist-custom.yaml --target 0.5

A configuration is on the budget frontier when it meets the MACs target and no unit can take
its next allowed channel count without breaking it (every search method's best lies there
or is matched by one that does: a unit given more channels rarely scores worse). Every
frontier configuration is evaluated on the validation split, as a search would; the line
printed is the best, how many there are, and where the searches' best lies among them. Only
for networks with few units: the frontier grows with the product of the units' options.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlprune.arguments import arg, parse
from rlprune.errors import run_script
from rlprune.evaluation.task import PruningTask
from rlprune.presets.loader import env_spec, load_env_config
from rlprune.presets.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Args:
    """The enumeration's arguments (``--flag-name`` for each field)."""

    env: str = arg("examples/fmnist-custom.yaml", "preset name or YAML path")
    target: float = arg(0.5, "MACs target")
    limit: int = arg(5000, "refuse larger frontiers")


def frontier(task: PruningTask, target: float) -> list[np.ndarray]:
    """Every configuration that meets ``target`` and cannot grow any unit by one step."""
    budget = target * task.analysis.macs
    model = task.analysis.mac_model
    *heads, last = task.candidates
    found = []
    for head in itertools.product(*heads):
        fits = [n for n in last if model.macs(np.array([*head, n])) <= budget]
        if not fits:
            continue
        channels = np.array([*head, max(fits)], dtype=np.int64)
        grows = False
        for i, options in enumerate(task.candidates[:-1]):
            larger = options[options > channels[i]]
            if larger.size:
                trial = channels.copy()
                trial[i] = larger[0]
                grows = grows or model.macs(trial) <= budget
        if not grows:
            found.append(channels)
    return found


def main(argv: list[str] | None = None) -> int:
    """Print the best frontier configuration and its rank statistics."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    task = load_task(load_env_config(env_spec(args.env, ROOT), {"target": args.target}))
    start = time.perf_counter()
    configs = frontier(task, args.target)
    if len(configs) > args.limit:
        print(f"{len(configs)} frontier configurations (over --limit {args.limit}); too many")
        return 1
    scored = sorted(
        ((task.evaluate(c).accuracy, tuple(int(n) for n in c)) for c in configs), reverse=True
    )
    best, channels = scored[0]
    ties = sum(1 for acc, _ in scored if acc == best)
    print(
        f"{Path(args.env).stem} @ {args.target}: {len(configs)} frontier configurations "
        f"({len(task.analysis.units)} units) scored in {time.perf_counter() - start:.0f} s; "
        f"best val {100 * best:.2f} % at {list(channels)} ({ties} reach it); "
        f"median {100 * float(np.median([a for a, _ in scored])):.2f} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
