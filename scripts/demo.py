"""The demo behind `make demo`: learn a pruning policy on the embedded digits preset.

Trains PPO for 150 episodes (150 pruned networks evaluated) at a 0.5 MACs target,
compares its best network with the uniform-ratio network at the same budget, and
applies the learned policy to export a pruned model with a report.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from rlprune.cli import main as cli


def main() -> int:
    warnings.simplefilter("ignore", UserWarning)
    out = Path("runs") / "demo"
    status = cli(["train", "--env", "digits-cnn", "--episodes", "150", "--out", str(out / "train")])
    if status:
        return status
    run = max((out / "train").iterdir(), key=lambda p: p.stat().st_mtime)

    from rlprune.baselines import uniform_keep_ratio
    from rlprune.config import load_env_config
    from rlprune.prune import keep_count
    from rlprune.task import PruningTask

    task = PruningTask.from_config(load_env_config("digits-cnn"))
    ratio = uniform_keep_ratio(task, 0.5)
    uniform = task.evaluate([keep_count(ratio, u.out_channels) for u in task.analysis.units])
    print(
        f"uniform keep-ratio {ratio:.3f}: val acc {uniform.accuracy:.4f} "
        f"at MACs ratio {uniform.macs_ratio:.3f}"
    )
    return cli(["apply", "--policy", str(run), "--env", "digits-cnn", "--out", str(out / "apply")])


if __name__ == "__main__":
    sys.exit(main())
