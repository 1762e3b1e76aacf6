"""Sweep torchvision's classifiers through rlprune: one row per model, then totals.

    python tools/check_architectures.py                     # every CNN and ViT-B at 64x64
    python tools/check_architectures.py --size 224 --models vit_b_16
    python tools/check_architectures.py --size 224 --models resnet50,densenet121
    python tools/check_architectures.py --models tests/nets.py:shuffle_net   # any model spec

For each model (random weights, 10 classes, a few random images as data) it times the
analysis (`PruningTask.from_model`), runs random-action episodes at the target through
the Gymnasium env, prunes the best candidate physically, runs it forward, counts its
FLOPs with `torch.utils.flop_counter` (independent of torch-pruning; attention through
the math kernel, whose products it sees) against the unpruned model's, and exports it (TorchScript + state dict). A row is `ok` when all of
that worked and the FLOPs ratio is within the target (1 % slack: the budget is kept in
torch-pruning's MACs, which also count BatchNorm and activations).

torchvision's PyPI wheel is built against a CUDA torch and its compiled ops do not load
beside the CPU torch used here; only its model definitions (plain Python) are used, so
they are imported without torchvision's `__init__` when the normal import fails
(:mod:`rlprune.models.vision`).
Of the transformers, ViT-B/16 and ViT-B/32 are swept (heads and MLP widths as units,
the embedding kept); ViT-L and ViT-H are left out by default only for their size (run
them with `--models`), Swin and MaxViT because their attention is not
`nn.MultiheadAttention` (windowed, relative-position): rlprune cannot read their heads.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import types
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from rlprune.arguments import arg, parse
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.evaluation.candidates import Candidate
from rlprune.evaluation.splits import from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import make_config
from rlprune.models.vision import build_classifier, torchvision_models
from rlprune.reports.export import export_model

LEFT_OUT = ("vit_l_", "vit_h_", "swin_", "maxvit_")
"""Large ViTs (by size only) and transformers whose attention rlprune cannot read."""
AT_299 = ("inception_v3",)


@dataclass
class Args:
    """The sweep's arguments (``--flag-name`` for each field)."""

    models: str | None = arg(
        None, "comma-separated names or model specs (default: every CNN, ViT-B/16 and /32)"
    )
    size: int = arg(64, "input size (inception_v3: 299)")
    target: float = arg(0.5, "MACs target")
    episodes: int = arg(3, "random-action episodes")
    images: int = arg(8, "images per split")
    threads: int = arg(0, "torch threads (0: default)")


def default_names(models: types.ModuleType) -> list[str]:
    """Every classification model in ``torchvision.models`` but :data:`LEFT_OUT`."""
    names: list[str] = models.list_models(module=models)
    return [n for n in names if not n.startswith(LEFT_OUT)]


def flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass as `torch.utils.flop_counter` counts them (attention
    through the math kernel: the counter does not see the fused CPU kernel's products)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x)
    return int(counter.get_total_flops())


@dataclass
class Row:
    """What one model measured."""

    model: str
    size: int
    units: int = 0
    frozen: int = 0
    analysis_s: float = float("nan")
    episode_s: float = float("nan")
    surgery_s: float = float("nan")
    """Median non-forward part of an episode: copy and surgery (and counting, if any)."""
    macs_ratio: float = float("nan")
    flops_ratio: float = float("nan")
    exact: bool = False
    status: str = "ok"


def check(models: types.ModuleType | None, name: str, args: Args) -> Row:
    """Analyse, search, prune, count and export one model."""
    size = 299 if name in AT_299 else args.size
    row = Row(name, size)
    try:
        model = build_classifier(name, size, models)
        n = args.images
        g = torch.Generator().manual_seed(0)
        x = torch.randn(3 * n, 3, size, size, generator=g)
        y = torch.randint(0, 10, (3 * n,), generator=g)
        data = from_tensors(x[:n], y[:n], x[n : 2 * n], y[n : 2 * n], x[2 * n :], y[2 * n :])
        config = make_config(
            {
                "name": f"tv-{name}",
                "target": args.target,
                "calibration_batches": 1,
                "batch_size": n,
                "val_size": n,
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            task = PruningTask.from_model(model, data, config)
            row.analysis_s = time.perf_counter() - t0
        row.units = len(task.analysis.units)
        row.frozen = len(task.analysis.frozen)
        row.exact = task.analysis.mac_model.exact
        env = PruningEnv(task=task, config=config)
        rng = np.random.default_rng(0)
        times, surgery = [], []
        best = None
        for episode in range(args.episodes):
            task.cache.clear()
            before = task.timings.prune
            t0 = time.perf_counter()
            env.reset(seed=episode)
            done = False
            info: dict[str, Any] = {}
            while not done:
                _, _, done, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
            times.append(time.perf_counter() - t0)
            surgery.append(task.timings.prune - before)
            candidate = Candidate.from_dict(info)
            if best is None or candidate.accuracy > best.accuracy:
                best = candidate
        row.episode_s = statistics.median(times)
        row.surgery_s = statistics.median(surgery)
        assert best is not None
        pruned = task.prune(best.channels, count=True)
        row.macs_ratio = pruned.macs / task.analysis.macs
        if pruned.macs != best.macs:
            row.status = f"MACs {pruned.macs} measured, {best.macs} predicted"
        example = task.example_inputs
        # task.model: the model as analysed (attention in the form that loses heads)
        row.flops_ratio = flops(pruned.model, example) / flops(task.model, example)
        if row.flops_ratio > args.target * 1.01:
            row.status = f"over budget: FLOPs ratio {row.flops_ratio:.3f}"
        with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(pruned.model, example, out, onnx=False)
    except Exception as exc:  # one row per model, whatever breaks
        text = str(exc).strip().splitlines()
        row.status = f"{type(exc).__name__}: {text[0] if text else ''}"[:120]
    return row


def main(argv: list[str] | None = None) -> int:
    """Print one row per model, then totals; exit status 1 unless every row is ok."""
    args = parse(Args, argv, description=__doc__.splitlines()[0])
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else None
    models = None if names and all(":" in n for n in names) else torchvision_models()
    if names is None:
        assert models is not None
        names = default_names(models)
    header = (
        f"{'model':<28} {'size':>4} {'units':>5} {'frozen':>6} {'analysis s':>10} "
        f"{'episode s':>9} {'surgery s':>9} {'MACs':>5} {'FLOPs':>5}  status"
    )
    print(header)
    print("-" * len(header))
    rows = []
    for name in names:
        row = check(models, name, args)
        rows.append(row)
        macs = f"{row.macs_ratio:.3f}" if row.macs_ratio == row.macs_ratio else "-"
        print(
            f"{row.model:<28} {row.size:>4} {row.units:>5} {row.frozen:>6} "
            f"{row.analysis_s:>10.2f} {row.episode_s:>9.2f} {row.surgery_s:>9.3f} "
            f"{macs:>5} {row.flops_ratio:>5.3f}  {row.status}"
            + ("" if row.exact or row.status != "ok" else " (MACs model approximate)"),
            flush=True,
        )
    ok = [r for r in rows if r.status == "ok"]
    print(
        f"\n{len(ok)}/{len(rows)} models ok; {sum(r.frozen > 0 for r in rows)} with frozen "
        f"layers ({sum(r.frozen for r in rows)} in all); "
        f"{sum(r.exact for r in ok)}/{len(ok)} with an exact MACs model; analysis median "
        f"{statistics.median([r.analysis_s for r in ok]) if ok else float('nan'):.2f} s"
    )
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(run_script(main))
