"""torchvision's ResNet-50 and MobileNetV2 at 224x224 under a latency budget (latency only).

    pip install -c constraints.txt torchvision   # the `vision` extra: model definitions only
    python experiments/latency_vision.py          # minutes per network on a 2-core CPU

Random weights and random images: accuracy means nothing here, speed does. For each
network, at ``--metric latency --target`` (batch --latency-batch, --threads threads), it
runs ``rlprune apply`` (the shipped general policy, zero-shot) and a ``ppo`` search of
--evals evaluations, and times what each delivers against the original, interleaved, at
batch 1 and 64. Results go to docs/benchmarks/latency/vision.json (kept; a finished
network is skipped) and the table into docs/latency.md's vision section (rewritten by
``experiments/latency_suite.py --page-only``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from rlprune.apply import ApplySettings, apply_policy
from rlprune.arguments import arg, parse
from rlprune.errors import run_script
from rlprune.mdp.settings import EnvConfig, make_config
from rlprune.models.vision import build_classifier
from rlprune.presets.tasks import load_task
from rlprune.reports.apply_report import read_report
from rlprune.search.benchmark import BenchmarkSettings, run_benchmark

ROOT = Path(__file__).resolve().parent.parent
KEPT = ROOT / "docs" / "benchmarks" / "latency" / "vision.json"


def resnet50() -> nn.Module:
    """torchvision's ResNet-50, random weights, 10 classes."""
    return build_classifier("resnet50")


def mobilenet_v2() -> nn.Module:
    """torchvision's MobileNetV2, random weights, 10 classes."""
    return build_classifier("mobilenet_v2")


def random_224() -> dict[str, Any]:
    """Random 3x224x224 images (a few per split): enough to run the pipeline."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> TensorDataset:
        return TensorDataset(
            torch.randn(n, 3, 224, 224, generator=g), torch.randint(10, (n,), generator=g)
        )

    return {"train": split(16), "val": split(16), "test": split(8), "num_classes": 10}


def text_list(text: str) -> list[str]:
    """An argparse type: names, comma-separated."""
    return text.split(",")


@dataclass
class Args:
    """The experiment's arguments (``--flag-name`` for each field)."""

    networks: list[str] = arg(["resnet50", "mobilenet_v2"], "factories here", parse=text_list)
    target: float = arg(0.5, "latency target")
    latency_batch: int = arg(1, "batch size of the latency budget")
    threads: int = arg(1, "torch threads for every timing")
    evals: int = arg(50, "ppo search evaluations")
    repeats: int = arg(5, "timed passes per model and batch size")
    out: Path = arg(ROOT / "results" / "latency-vision", "run outputs (not committed)")
    rerun: bool = arg(False, "measure networks already kept again")
    apply_only: bool = arg(False, "time what apply delivers, run no ppo search")


def _config(network: str, args: Args) -> EnvConfig:
    here = Path(__file__).resolve()
    return make_config(
        {
            "name": f"tv-{network}",
            "model": f"{here}:{network}",
            "dataset": f"{here}:random_224",
            "normalize": "none",
            "metric": "latency",
            "latency_batch": args.latency_batch,
            "threads": args.threads,
            "target": args.target,
            "calibration_batches": 1,
            "batch_size": 8,
            "probe_images": 8,
        }
    )


def measure(network: str, args: Args) -> dict[str, Any]:
    """apply (zero-shot) and a ppo search on one network; their speedups at batch 1 and 64."""
    config = _config(network, args)
    applied = args.out / f"{network}-apply"
    if (applied / "report.json").is_file() and not args.rerun:  # a finished apply stands
        report = read_report(applied / "report.json")
    else:
        report = apply_policy(
            None,
            config,
            ApplySettings(latency_batches=(1, 64), latency_repeats=args.repeats),
            applied,
            overwrite=True,
        )
    apply_s = report.wall_time_s
    ppo_row = None if args.apply_only else _ppo(network, args, config)
    latency = report.latency_budget or {}
    return {
        "network": network,
        "target": args.target,
        "latency_batch": args.latency_batch,
        "threads": latency.get("threads"),
        "device": latency.get("device"),
        "torch": latency.get("torch"),
        "model_seconds": latency.get("model_seconds"),
        "round_to": latency.get("round_to"),
        "apply": {
            "latency_ratio": report.candidate.latency_ratio,
            "macs_ratio": report.candidate.macs_ratio,
            "speedups": {str(b): v for b, v in report.latency.items()},
            "predicted": latency.get("predicted_speedup"),
            "seconds": apply_s,
        },
        "ppo": ppo_row,
    }


def _ppo(network: str, args: Args, config: EnvConfig) -> dict[str, Any]:
    """A ppo search of --evals evaluations and the speedups of its best."""
    task = load_task(config)
    settings = BenchmarkSettings(
        methods=("ppo",), evals=args.evals, seeds=1, latency_repeats=args.repeats
    )
    started = time.perf_counter()
    results, _ = run_benchmark(
        task, settings, args.out / f"{network}-ppo", config=config, overwrite=True
    )
    ppo = results[0]
    return {
        "evals": args.evals,
        "latency_ratio": ppo.latency_ratio,
        "macs_ratio": ppo.macs_ratio,
        "speedup_b1": ppo.speedup_b1,
        "speedup_b64": ppo.latency_speedup,
        "spread": ppo.speedup_spread,
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every network not kept yet; keep the results after each."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    torch.set_num_threads(args.threads)
    kept: dict[str, Any] = json.loads(KEPT.read_text()) if KEPT.is_file() else {}
    for network in args.networks:
        if network in kept and not args.rerun:
            continue
        kept[network] = measure(network, args)
        KEPT.parent.mkdir(parents=True, exist_ok=True)
        KEPT.write_text(json.dumps(kept, indent=1))
        row = kept[network]
        print(
            f"{network}: apply {row['apply']['speedups']['1']['speedup']:.2f}x b1, "
            f"{row['apply']['speedups']['64']['speedup']:.2f}x b64",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
