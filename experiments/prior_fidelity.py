"""How probe fidelity moves the sensitivity prior: allocate from probes on k validation images.

    python experiments/prior_fidelity.py --env fmnist-resnet20 --target 0.5 --images 512,1024,all

For each fidelity the per-unit sensitivity probes (units x 3, charged k / val_size each)
feed the greedy allocation (monotone curves below full fidelity, as the env's prior
does); the allocation is then scored once at full fidelity. Prints one line per
fidelity: probe cost in full evaluations, the kept channels, and the validation accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlprune.arguments import arg, parse
from rlprune.errors import run_script
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task
from rlprune.priors import sensitivity_channels


@dataclass
class Args:
    """The sweep's arguments (``--flag-name`` for each field)."""

    env: str = arg("fmnist-resnet20", "preset name or YAML path")
    target: float = arg(0.5, "MACs target")
    images: str = arg("512,1024,all", "comma-separated; 'all' = full")


def main(argv: list[str] | None = None) -> int:
    """Print one line per probe fidelity."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    task = load_task(load_env_config(args.env, {"target": args.target}))
    for item in args.images.split(","):
        images = None if item.strip() == "all" else int(item)
        task.reset_search()
        channels = sensitivity_channels(task, args.target, images)
        probes = task.charged()
        scored = task.evaluate(channels)
        print(
            f"probe images {item.strip():>5}: probes cost {probes:5.2f} full evaluations; "
            f"prior val acc {100 * scored.accuracy:.2f} % at MACs {scored.macs_ratio:.3f}; "
            f"channels {[int(n) for n in channels]}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
