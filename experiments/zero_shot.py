"""A policy zero-shot on several networks and targets: one line each (probes + 1 evaluation).

    python experiments/zero_shot.py --policy runs/.../policy \\
        --envs fmnist-vgg,fmnist-mobilenetv2,examples/fmnist-custom.yaml --targets 0.3,0.5,0.7

For a quick look at a candidate general policy before the full transfer suite
(``experiments/transfer_suite.py``, which adds the baselines, seeds and fine-tuning): each
line is the validation accuracy and MACs ratio of the policy's deterministic episode (its
own corrections everywhere, unless ``--trust family``) and the features that fall outside
its training ranges (with ``--trust family``, the corrections played there at the
policy's off-family strength, 0 being its prior); for a residual policy, the accuracy of
the prior it corrects (one more evaluation, not in the cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlprune.arguments import arg, parse
from rlprune.env.rollout import TRUST_MODES, PriorPlayer, rollout
from rlprune.errors import run_script
from rlprune.presets.loader import GENERAL_POLICY, env_spec, load_env_config
from rlprune.rl.policy import load_policy
from rlprune.rl.transfer import policy_env, zero_shot
from rlprune.search.benchmark import load_task

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Args:
    """The zero-shot look's arguments (``--flag-name`` for each field)."""

    policy: Path = arg(GENERAL_POLICY, "policy folder (default: the bundled general policy)")
    envs: str = arg("fmnist-vgg,fmnist-mobilenetv2", "networks, comma-separated")
    targets: str = arg("0.3,0.5,0.7", "MACs targets, comma-separated")
    trust: str = arg("always", "as rlprune apply --trust", choices=TRUST_MODES)


def main(argv: list[str] | None = None) -> int:
    """Print one zero-shot line per (env, target)."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
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
