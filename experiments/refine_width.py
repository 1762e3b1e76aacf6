"""How `rlprune apply --refine` should search: each box width and screening share per network.

    python experiments/refine_width.py --envs fmnist-vgg,fmnist-resnet20 --widths 0.15,0.25
    python experiments/refine_width.py --envs fmnist-cnn --widths 0.25 --fidelities 1,0.25

For every network, the bundled general policy's zero-shot configuration at --target (as
`rlprune apply` plays it), then for each width, fidelity and seed a refinement of --evals
evaluations (:func:`rlprune.search.optuna_search.refine`; fidelity 1 screens nothing); one line
per width and fidelity: the best validation accuracy per seed and their mean, beside the
zero-shot's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlprune.arguments import arg, parse
from rlprune.cli import fraction_list
from rlprune.errors import run_script
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config
from rlprune.rl.policy import load_policy
from rlprune.rl.transfer import policy_env, zero_shot
from rlprune.search.benchmark import load_task
from rlprune.search.optuna_search import REFINE_FIDELITY, refine

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Args:
    """The sweep's arguments (``--flag-name`` for each field)."""

    policy: Path = arg(GENERAL_POLICY, "policy folder (default: the bundled general policy)")
    envs: str = arg("fmnist-vgg,fmnist-resnet20", "networks, comma-separated")
    widths: list[float] = arg(
        [0.15, 0.25], "box widths in keep-ratio, comma-separated", parse=fraction_list
    )
    fidelities: list[float] = arg(
        [REFINE_FIDELITY],
        "screening shares of the validation set, comma-separated (1: no screening)",
        parse=fraction_list,
    )
    target: float = arg(0.5, "MACs target")
    evals: int = arg(20, "evaluations per refinement")
    seeds: int = arg(3, "refinements per width and fidelity")


def main(argv: list[str] | None = None) -> int:
    """Print one line per (env, width)."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
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
