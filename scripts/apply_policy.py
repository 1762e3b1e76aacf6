"""Apply a learned policy to a (new) model: the Python API behind `rlprune apply`.

python scripts/apply_policy.py --policy runs/<run> --env fmnist-vgg --target 0.5
"""

from __future__ import annotations

import argparse

from rlprune.apply import ApplySettings, apply_policy
from rlprune.config import load_env_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", required=True, help="run folder or its policy/ folder")
    parser.add_argument("--env", default="digits-cnn", help="preset of the model to prune")
    parser.add_argument("--target", type=float, help="fraction of MACs to keep")
    parser.add_argument("--adapt-episodes", type=int, default=0)
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--out", default="runs/apply", help="output folder")
    args = parser.parse_args()

    report = apply_policy(
        args.policy,
        load_env_config(args.env),
        ApplySettings(
            target=args.target,
            adapt_episodes=args.adapt_episodes,
            finetune_epochs=args.finetune_epochs,
        ),
        args.out,
    )
    print(
        f"MACs ratio {report.macs_ratio:.3f}; test accuracy "
        f"{report.test_accuracy_before:.4f} -> {report.test_accuracy_after:.4f}; "
        f"batch-64 speedup {report.latency[64]['speedup']:.2f}x"
    )
    print(f"pruned model and report in {args.out}")


if __name__ == "__main__":
    main()
