"""Apply a learned policy to a (new) model and export the pruned model: a thin shim over `rlprune apply`.

    python scripts/apply_policy.py --policy runs/<run> --env fmnist-vgg --target 0.5

Every flag is the CLI's (`rlprune apply --help`); this file only forwards them, as
rl-baselines3-zoo's train.py does, so the script and the command never drift apart.
"""

from __future__ import annotations

import sys

from rlprune.cli import main

if __name__ == "__main__":
    sys.exit(main(["apply", *sys.argv[1:]]))
