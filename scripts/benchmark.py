"""Compare search methods at equal cost on one preset: the Python API behind `rlprune benchmark`.

python scripts/benchmark.py --env digits-cnn --methods ppo,random,uniform --evals 60 --seeds 1
"""

from __future__ import annotations

import argparse

from rlprune.benchmark import BenchmarkSettings, load_task, run_benchmark
from rlprune.config import load_env_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="digits-cnn", help="preset name or YAML path")
    parser.add_argument("--methods", default="ppo,random,uniform,magnitude,sensitivity,ddpg")
    parser.add_argument("--evals", type=int, default=60, help="evaluations per method and seed")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--out", default="results/benchmark", help="output folder")
    parser.add_argument("--resume", action="store_true", help="finish an interrupted run")
    args = parser.parse_args()

    config = load_env_config(args.env)
    settings = BenchmarkSettings(
        methods=tuple(args.methods.split(",")),
        evals=args.evals,
        seeds=args.seeds,
        finetune_epochs=args.finetune_epochs,
    )
    results, files = run_benchmark(load_task(config, None), settings, args.out, resume=args.resume)
    for r in results:
        print(f"{r.method:>12} seed {r.seed}: val {r.val_accuracy:.4f} test {r.test_accuracy:.4f}")
    print(files["summary.md"].read_text())


if __name__ == "__main__":
    main()
