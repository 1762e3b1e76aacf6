"""Where does an episode's time go? Prints the per-episode split for a preset.

    python scripts/profile_env.py --env digits-cnn --episodes 30
    python scripts/profile_env.py --arch resnet50 --size 224 --runs 5   # a torchvision CNN
    python scripts/profile_env.py --env digits-cnn --memory --episodes 2000
    python scripts/profile_env.py --env my-images.yaml --memory --episodes 3   # peak RSS

With ``--memory`` it instead runs random-action episodes through one task (the
candidate cache kept, so the cache and every distinct pruned shape count) and prints
the resident memory after 100 episodes and at the end, and the peak (with a dataset
factory's splits streamed from disk, the peak does not grow with the dataset's size).

With ``--arch`` the network is a torchvision classification CNN (random weights, a few
random images as data: the split between surgery and forward passes is what is
measured, not accuracy); see ``scripts/check_architectures.py`` for how torchvision's
model definitions are imported. ``--runs`` repeats the analysis and reports its median.

Analysis runs once per task; every episode then steps through the units (env),
prunes a copy (torch-pruning), recalibrates BatchNorm and scores on the
validation split. Actions are random and the candidate cache is cleared before
each episode, so every episode pays for a full evaluation. Reports medians.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.evaluation.splits import DataSplits, from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig, make_config
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="digits-cnn", help="preset name or YAML path")
    parser.add_argument("--episodes", type=int, default=30, help="episodes to time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--memory", action="store_true", help="print resident memory after 100 and all episodes"
    )
    parser.add_argument("--dataset", help="dataset override (name, folder or factory spec)")
    parser.add_argument("--arch", help="a torchvision CNN (e.g. resnet50) instead of --env")
    parser.add_argument("--size", type=int, default=224, help="input size with --arch")
    parser.add_argument("--runs", type=int, default=1, help="analyses to time (median)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    if args.memory:
        memory(args)
        return

    t0 = time.perf_counter()
    if args.arch:
        model, data, config = torchvision_task(args.arch, args.size)
    else:
        config = load_env_config(args.env, {"dataset": args.dataset})
        loaded = load_task(config)
        model, data = loaded.model, loaded.data
    setup = time.perf_counter() - t0
    analyses = []
    for _ in range(max(args.runs, 1)):
        t0 = time.perf_counter()
        task = PruningTask.from_model(model, data, config)  # analysis alone, data in memory
        analyses.append(time.perf_counter() - t0)
    analysis_s = statistics.median(analyses)
    env = PruningEnv(task=task, config=config)
    rng = np.random.default_rng(args.seed)

    rows: dict[str, list[float]] = {k: [] for k in ("total", "prune", "calibrate", "evaluate")}
    for episode in range(args.episodes + 1):
        task.cache.clear()
        before = dataclasses.replace(task.timings)
        start = time.perf_counter()
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, done, _, _ = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        total = time.perf_counter() - start
        if episode == 0:
            continue  # warm-up
        rows["total"].append(total)
        for key in ("prune", "calibrate", "evaluate"):
            rows[key].append(getattr(task.timings, key) - getattr(before, key))
    rows["other"] = [
        t - p - c - e
        for t, p, c, e in zip(
            rows["total"], rows["prune"], rows["calibrate"], rows["evaluate"], strict=True
        )
    ]
    median = {k: statistics.median(v) for k, v in rows.items()}
    nonforward = [p + o for p, o in zip(rows["prune"], rows["other"], strict=True)]
    overhead = [
        (p + o) / t for p, o, t in zip(rows["prune"], rows["other"], rows["total"], strict=True)
    ]

    print(
        f"env {config.name}: {len(task.analysis.units)} units, "
        f"{len(task.evaluator.val_x)} validation images, "
        f"{config.task.calibration_batches}x{config.task.batch_size} calibration images"
    )
    print(f"setup (data + model load + analysis): {setup * 1000:.0f} ms once")
    print(
        f"analysis alone:                       {analysis_s * 1000:.0f} ms once "
        f"(median of {len(analyses)}: {', '.join(f'{a:.2f}' for a in analyses)} s)"
    )
    print(f"per episode, median of {args.episodes}:")
    for key in ("prune", "calibrate", "evaluate", "other", "total"):
        share = median[key] / median["total"]
        print(f"  {key:<10} {median[key] * 1000:8.1f} ms  {share:6.1%}")
    print(
        f"env + pruning overhead (prune + other): median {statistics.median(overhead):.1%} "
        f"of an episode, {statistics.median(nonforward) * 1000:.1f} ms"
    )


def torchvision_task(arch: str, size: int) -> tuple[Any, DataSplits, EnvConfig]:
    """A torchvision CNN with random weights and 8 random images per split."""
    from check_architectures import build, torchvision_models

    model = build(torchvision_models(), arch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 3, size, size, generator=g)
    y = torch.randint(0, 10, (24,), generator=g)
    data = from_tensors(x[:8], y[:8], x[8:16], y[8:16], x[16:], y[16:])
    config = make_config(
        {
            "name": f"{arch}-{size}",
            "target": 0.5,
            "calibration_batches": 1,
            "batch_size": 8,
            "val_size": 8,
        }
    )
    return model, data, config


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc; elsewhere the peak RSS)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(args: argparse.Namespace) -> None:
    """RSS after 100 episodes and after ``args.episodes`` (random actions, one task)."""
    config = load_env_config(args.env, {"dataset": args.dataset})
    task = load_task(config)
    env = PruningEnv(task=task, config=config)
    rng = np.random.default_rng(args.seed)
    marks = {100: 0.0, args.episodes: 0.0}
    start = time.perf_counter()
    for episode in range(1, args.episodes + 1):
        env.reset(seed=episode)
        done = False
        while not done:
            _, _, done, _, _ = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        if episode in marks:
            marks[episode] = rss_mb()
            print(
                f"after {episode:5d} episodes: RSS {marks[episode]:7.1f} MB "
                f"({len(task.cache)} cached candidates, {time.perf_counter() - start:.0f}s)",
                flush=True,
            )
    if args.episodes > 100:
        print(
            f"growth from episode 100 to {args.episodes}: {marks[args.episodes] - marks[100]:+.1f} MB"
        )
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sizes = {s: len(getattr(task.data, s)) for s in ("train", "val", "test")}
    print(f"peak RSS {peak:.1f} MB over {args.episodes} episodes; split sizes {sizes}")


if __name__ == "__main__":
    raise SystemExit(run_script(main))
