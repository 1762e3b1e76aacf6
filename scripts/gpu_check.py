"""Do the CPU and the GPU agree? Analysis plus random-action episodes on each device.

    python scripts/gpu_check.py                 # fmnist-resnet20 and a ResNet-50-size task
    python scripts/gpu_check.py --episodes 5 --skip-large

For each task, the same seeded episodes run with ``--device cpu`` and, when torch sees a
CUDA device, with ``--device cuda``: the script checks that both pick the same channels
(the choices are structural, so they must match exactly) and that their validation
accuracies agree within 0.5 points, and prints seconds per episode on each device. Then it
times each task's model against the same model pruned to half its MACs (one keep-ratio for
every unit, ``uniform_channels``) on each device, batch 1 and --batch (median of
--repeats, synchronised on the GPU), so the speedup a pruned model brings on a GPU is
measured, not assumed. The
large task is a CIFAR-style ResNet of depth 50 from rlprune's zoo (width 16) on random
224x224 images: a network of ResNet-50's depth and about its MACs per image, not
torchvision's ResNet-50; it checks speed and agreement, not accuracy. Without a GPU only
the CPU leg runs, and the script says so.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.evaluation.splits import from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import EnvConfig, make_config
from rlprune.models.specs import build_model
from rlprune.presets.loader import load_env_config
from rlprune.presets.tasks import load_task
from rlprune.priors import uniform_channels
from rlprune.reports.latency import compare_latency


def large_task(device: str, round_to: int | None = None) -> PruningTask:
    """A depth-50 zoo ResNet on random 224x224 RGB images (10 classes)."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 3, 224, 224, generator=g), torch.randint(10, (n,), generator=g)

    data = from_tensors(*split(32), *split(64), *split(8), name="random-224")
    torch.manual_seed(0)
    kwargs = {"depth": 50, "width": 16}
    model = build_model("resnet", in_channels=3, num_classes=10, input_size=224, kwargs=kwargs)
    config = make_config(
        {
            "name": "resnet50-224",
            "model": "resnet",
            "model_kwargs": kwargs,
            "calibration_batches": 2,
            "batch_size": 16,
            "device": device,
            "round_to": round_to,
        }
    )
    return PruningTask.from_model(model.eval(), data, config)


def preset_task(config: EnvConfig, device: str) -> PruningTask:
    return load_task(config.derive({"device": device}))


def episodes(
    task: PruningTask, n: int, seed: int
) -> tuple[list[tuple[int, ...]], list[float], float]:
    """``n`` seeded random-action episodes: channels, accuracies, median seconds."""
    env = PruningEnv(task=task)
    rng = np.random.default_rng(seed)
    chosen, accuracies, seconds = [], [], []
    for episode in range(n):
        task.cache.clear()
        start = time.perf_counter()
        env.reset(seed=seed + episode)
        done, info = False, {}
        while not done:
            _, _, done, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        seconds.append(time.perf_counter() - start)
        chosen.append(tuple(info["channels"]))
        accuracies.append(float(info["accuracy"]))
    return chosen, accuracies, statistics.median(seconds)


def latency_rows(name: str, task: PruningTask, batch: int, repeats: int) -> list[str]:
    """Original vs pruned to half the MACs (uniform keep-ratio), timed on the task's device."""
    pruned = task.prune(uniform_channels(task, 0.5)).model
    speed = compare_latency(
        task.on_device(task.model),
        pruned.to(task.device),
        task.data.input_shape,
        batch_sizes=(1, batch),
        repeats=repeats,
        device=task.device,
    )
    return [
        f"| {name} | {task.device} | {b} | {s.before.median_ms:.2f} | {s.after.median_ms:.2f} "
        f"| {s.speedup:.2f}x |"
        for b, s in speed.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-large", action="store_true", help="only fmnist-resnet20")
    parser.add_argument("--batch", type=int, default=32, help="the latency leg's large batch")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per model")
    parser.add_argument(
        "--round-to", type=int, default=None, help="keep channel counts multiples of this"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if len(devices) == 1:
        print("no CUDA device: only the CPU leg runs (nothing to compare)")
    else:
        print(f"GPU: {torch.cuda.get_device_name(0)}")
    small = load_env_config("fmnist-resnet20", {"round_to": args.round_to})
    builders = {"fmnist-resnet20": lambda d: preset_task(small, d)}
    if not args.skip_large:
        builders["resnet50-224 (random data)"] = lambda d: large_task(d, args.round_to)
    failed = False
    timings: list[str] = []
    print(f"| task | device | analysis s | s / episode ({args.episodes} episodes) |")
    print("| --- | --- | ---: | ---: |")
    for name, build in builders.items():
        runs = {}
        for device in devices:
            start = time.perf_counter()
            task = build(device)
            analysis = time.perf_counter() - start
            runs[device] = episodes(task, args.episodes, args.seed)
            timings += latency_rows(name, task, args.batch, args.repeats)
            print(
                f"| {name} | {task.device} | {analysis:.1f} | {runs[device][2]:.3f} |", flush=True
            )
        if "cuda" in runs:
            same = runs["cpu"][0] == runs["cuda"][0]
            gap = max(abs(a - b) for a, b in zip(runs["cpu"][1], runs["cuda"][1], strict=True))
            ok = same and gap <= 0.005
            failed |= not ok
            print(
                f"  {name}: same channels {same}, largest accuracy gap {100 * gap:.2f} points, "
                f"GPU speedup {runs['cpu'][2] / runs['cuda'][2]:.1f}x: {'ok' if ok else 'FAILED'}"
            )
    print("\nlatency, original vs pruned to 0.5 of its MACs (uniform keep-ratio), median ms:")
    print("| task | device | batch | original | pruned | speedup |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    print("\n".join(timings))
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    raise SystemExit(run_script(main))
