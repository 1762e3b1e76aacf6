"""A policy zero-shot on several networks and targets: one line each (probes + 1 evaluation).

    python scripts/zero_shot.py --policy runs/.../policy \\
        --envs fmnist-vgg,fmnist-mobilenetv2,examples/fmnist-custom.yaml --targets 0.3,0.5,0.7

For a quick look at a candidate general policy before the full transfer suite
(``scripts/transfer_suite.py``, which adds the baselines, seeds and fine-tuning): each
line is the validation accuracy and MACs ratio of the policy's deterministic episode (its
own corrections everywhere, unless ``--trust family``) and the features that fall outside
its training ranges (with ``--trust family``, the corrections played there at the
policy's off-family strength, 0 being its prior); for a residual policy, the accuracy of
the prior it corrects (one more evaluation, not in the cost).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rlprune.env.rollout import (  # noqa: E402
    TRUST_MODES,  # noqa: E402
    PriorPlayer,
    rollout,
)
from rlprune.errors import run_script  # noqa: E402
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config  # noqa: E402
from rlprune.rl.policy import load_policy  # noqa: E402
from rlprune.rl.transfer import policy_env, zero_shot  # noqa: E402
from rlprune.search.benchmark import load_task  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Print one zero-shot line per (env, target)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", type=Path, default=GENERAL_POLICY)
    parser.add_argument("--envs", default="fmnist-vgg,fmnist-mobilenetv2")
    parser.add_argument("--targets", default="0.3,0.5,0.7")
    parser.add_argument(
        "--trust", choices=TRUST_MODES, default="always", help="as rlprune apply --trust"
    )
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    for env in args.envs.split(","):
        spec = env_spec(env, ROOT)
        for target in (float(t) for t in args.targets.split(",")):
            task = load_task(load_env_config(spec, {"target": target}), str(args.policy))
            pruning_env = policy_env(policy, task, target)
            config = pruning_env.config
            shot = zero_shot(policy, pruning_env, trust=args.trust)
            candidate = shot.candidate
            cost = task.charged()
            outside = ", ".join(f"{name} {distance:.2f}" for name, _, distance in shot.outside)
            prior = ""
            if config.env.action_mode == "residual":  # what action 0 plays, for reference
                played = rollout(PriorPlayer(), pruning_env)
                prior = f"; its {config.env.prior} prior {100 * played.accuracy:.2f} %"
            print(
                f"{Path(env).stem} @ {target}: zero-shot val {100 * candidate.accuracy:.2f} % "
                f"at MACs {candidate.macs_ratio:.3f} (cost {cost:.1f} evaluations)"
                + (f" [outside the family: corrections at {shot.scale:g}]" if shot.deferred else "")
                + prior
                + (f"; outside the family: {outside}" if outside else ""),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
