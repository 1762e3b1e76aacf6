"""Train a pruning agent on a preset (PPO by default): a thin shim over `rlprune train`.

    python scripts/train_agent.py --env digits-cnn --agent ppo --episodes 300 --seed 0

Every flag is the CLI's (`rlprune train --help`); this file only forwards them, as
rl-baselines3-zoo's train.py does, so the script and the command never drift apart.
"""

from __future__ import annotations

import sys

from rlprune.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
