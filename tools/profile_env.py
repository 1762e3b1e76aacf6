"""Where does an episode's time go? Prints the per-episode split for a preset.

    python tools/profile_env.py --env digits-cnn --episodes 30
    python tools/profile_env.py --arch resnet50 --size 224 --runs 5   # a torchvision CNN
    python tools/profile_env.py --env digits-cnn --memory --episodes 2000
    python tools/profile_env.py --env my-images.yaml --memory --episodes 3   # peak RSS

With ``--memory`` it instead runs random-action episodes through one task (the
candidate cache kept, so the cache and every distinct pruned shape count) and prints
the resident memory after 100 episodes and at the end, and the peak (with a dataset
factory's splits streamed from disk, the peak does not grow with the dataset's size).

With ``--arch`` the network is a torchvision classification CNN (random weights, a few
random images as data: the split between surgery and forward passes is what is
measured, not accuracy); torchvision's model definitions are imported as
``tools/check_architectures.py`` imports them (:mod:`rlprune.models.vision`). ``--runs`` repeats the analysis and reports its median.

Analysis runs once per task; every episode then steps through the units (env),
prunes a copy (torch-pruning), recalibrates BatchNorm and scores on the
validation split. Actions are random and the candidate cache is cleared before
each episode, so every episode pays for a full evaluation. Reports medians.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rlprune.arguments import arg, parse
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.evaluation.devices import threads_for_load
from rlprune.evaluation.splits import DataSplits, from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig, make_config
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task


@dataclass
class Args:
    """The profile's arguments (``--flag-name`` for each field)."""

    env: str = arg("digits-cnn", "preset name or YAML path")
    episodes: int = arg(30, "episodes to time")
    seed: int = arg(0, "seed of the random actions")
    memory: bool = arg(False, "print resident memory after 100 and all episodes")
    dataset: str | None = arg(None, "dataset override (name, folder or factory spec)")
    arch: str | None = arg(None, "a torchvision CNN (e.g. resnet50) instead of --env")
    size: int = arg(224, "input size with --arch")
    runs: int = arg(1, "analyses to time (median)")
    threads: int = arg(
        0, "torch threads (0: the CLI's default, one per core unless other processes hold cores)"
    )


def main(argv: list[str] | None = None) -> int:
    """Print where an episode's time goes (or, with --memory, the resident memory)."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(args.threads or threads_for_load())
    if args.memory:
        memory(args)
        return 0

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
        f"torch threads {torch.get_num_threads()}; env {config.name}: "
        f"{len(task.analysis.units)} units, "
        f"{task.val_size} validation images, "
        f"{config.task.calibration_batches}x{config.task.batch_size} calibration images"
    )
    print(f"setup (data + model load + analysis): {setup * 1000:.0f} ms once")
    print(
        f"analysis alone:                       {analysis_s * 1000:.0f} ms once "
        f"(median of {len(analyses)}: {', '.join(f'{a:.2f}' for a in analyses)} s)"
    )
    print(f"per episode, median of {args.episodes} (share: of all {args.episodes} episodes' time)")
    for key, share in shares(rows).items():
        print(f"  {key:<10} {median[key] * 1000:8.1f} ms  {share:6.1%}")
    print(
        f"env + pruning overhead (prune + other): median {statistics.median(overhead):.1%} "
        f"of an episode, {statistics.median(nonforward) * 1000:.1f} ms"
    )
    return 0


def shares(rows: dict[str, list[float]]) -> dict[str, float]:
    """Each part's share of the episodes' total time (``total`` itself: 1). Shares of sums,
    not ratios of medians: the parts' medians come from different episodes, so their
    ratios to the median total need not add up to 100 %; these do."""
    total = sum(rows["total"]) or 1.0
    parts = ("prune", "calibrate", "evaluate", "other")
    return {**{key: sum(rows[key]) / total for key in parts}, "total": 1.0}


def torchvision_task(arch: str, size: int) -> tuple[nn.Module, DataSplits, EnvConfig]:
    """A torchvision CNN with random weights and 8 random images per split."""
    from rlprune.models.vision import build_classifier  # torchvision only with --arch

    model = build_classifier(arch, size)
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


def memory(args: Args) -> None:
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
