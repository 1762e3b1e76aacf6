"""Train a pruning agent on a preset: the Python API behind `rlprune train`.

python scripts/train_agent.py --env digits-cnn --agent ppo --episodes 300 --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlprune.agents import load_agent_config
from rlprune.config import load_env_config
from rlprune.train import TrainSettings, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="digits-cnn", help="preset name or YAML path")
    parser.add_argument("--agent", default="ppo", help="agent preset name or YAML path")
    parser.add_argument("--episodes", type=int, default=300, help="pruned networks to evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs", help="folder for run folders")
    args = parser.parse_args()

    env_config = load_env_config(args.env)
    agent = load_agent_config(args.agent, env_config.name)
    result = train(
        env_config,
        agent,
        TrainSettings(episodes=args.episodes, seed=args.seed),
        runs_root=Path(args.out),
    )
    best = result.best
    if best is not None:
        print(f"best val accuracy {best.accuracy:.4f} at MACs ratio {best.macs_ratio:.3f}")
        print(
            "keep-ratios:",
            ", ".join(f"{u}={k:.2f}" for u, k in zip(best.units, best.keep_ratios, strict=True)),
        )
    print(f"run folder: {result.run_dir}")


if __name__ == "__main__":
    main()
