"""Compare search methods at equal cost on one preset: a thin shim over `rlprune benchmark`.

    python scripts/benchmark.py --env digits-cnn --methods ppo,random,uniform --evals 60 --seeds 1

Every flag is the CLI's (`rlprune benchmark --help`); this file only forwards them, as
rl-baselines3-zoo's train.py does, so the script and the command never drift apart.
"""

from __future__ import annotations

import sys

from rlprune.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
