"""How `rlprune apply --refine` should search: each box width and screening share per network.

    python scripts/refine_width.py --envs fmnist-vgg,fmnist-resnet20 --widths 0.15,0.25
    python scripts/refine_width.py --envs fmnist-cnn --widths 0.25 --fidelities 1,0.25

For every network, the bundled general policy's zero-shot configuration at --target (as
`rlprune apply` plays it), then for each width, fidelity and seed a refinement of --evals
evaluations (:func:`rlprune.search.optuna_search.refine`; fidelity 1 screens nothing); one line
per width and fidelity: the best validation accuracy per seed and their mean, beside the
zero-shot's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlprune.cli import fraction_list  # noqa: E402
from rlprune.errors import run_script  # noqa: E402
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config  # noqa: E402
from rlprune.rl.policy import load_policy  # noqa: E402
from rlprune.rl.transfer import policy_env, zero_shot  # noqa: E402
from rlprune.search.benchmark import load_task  # noqa: E402
from rlprune.search.optuna_search import REFINE_FIDELITY, refine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print one line per (env, width)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=GENERAL_POLICY)
    parser.add_argument("--envs", default="fmnist-vgg,fmnist-resnet20")
    parser.add_argument("--widths", type=fraction_list, default=[0.15, 0.25])
    parser.add_argument(
        "--fidelities",
        type=fraction_list,
        default=[REFINE_FIDELITY],
        help="screening shares of the validation set, comma-separated (1: no screening)",
    )
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--evals", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    for env in args.envs.split(","):
        task = load_task(
            load_env_config(env_spec(env, ROOT), {"target": args.target}), str(args.policy)
        )
        start = zero_shot(policy, policy_env(policy, task, args.target)).candidate
        for width in args.widths:
            for fidelity in args.fidelities:
                best = [
                    max(
                        start.accuracy,
                        refine(
                            task, args.target, start, args.evals, s, width=width, fidelity=fidelity
                        ).best.accuracy,
                    )
                    for s in range(args.seeds)
                ]
                print(
                    f"{Path(env).stem} @ {args.target}, width {width}, fidelity {fidelity}: "
                    f"zero-shot {100 * start.accuracy:.2f} %, refined ({args.evals} evaluations) "
                    + ", ".join(f"{100 * b:.2f}" for b in best)
                    + f" %, mean {100 * sum(best) / len(best):.2f} %",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
