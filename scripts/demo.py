"""The demo behind `make demo`: the digits benchmark quick profile.

Every method (PPO, DDPG, random search, uniform, global magnitude, sensitivity)
searches for the best digits CNN at half the MACs with the same budget of 60
candidate evaluations, one seed. Prints the table and where the plots are.
Takes one to three minutes on a 2-core CPU.
"""

from __future__ import annotations

import sys

from rlprune.cli import main
from rlprune.search.methods import DEFAULT_METHODS

if __name__ == "__main__":
    sys.exit(
        main(
            [
                "benchmark",
                "--env",
                "digits-cnn",
                "--methods",
                ",".join(DEFAULT_METHODS),
                "--evals",
                "60",
                "--seeds",
                "1",
                "--out",
                "results/demo",
                "--overwrite",
            ]
        )
    )
