"""Sweep torchvision's classification CNNs through rlprune: one row per model, then totals.

    python scripts/check_architectures.py                     # every CNN at 64x64
    python scripts/check_architectures.py --size 224 --models resnet50,densenet121
    python scripts/check_architectures.py --models tests/nets.py:shuffle_net   # any model spec

For each model (random weights, 10 classes, a few random images as data) it times the
analysis (`PruningTask.from_model`), runs random-action episodes at the target through
the Gymnasium env, prunes the best candidate physically, runs it forward, counts its
FLOPs with `torch.utils.flop_counter` (independent of torch-pruning) against the
unpruned model's, and exports it (TorchScript + state dict). A row is `ok` when all of
that worked and the FLOPs ratio is within the target (1 % slack: the budget is kept in
torch-pruning's MACs, which also count BatchNorm and activations).

torchvision's PyPI wheel is built against a CUDA torch and its compiled ops do not load
beside the CPU torch used here; only its model definitions (plain Python) are used, so
they are imported without torchvision's `__init__` when the normal import fails.
Transformers (ViT, Swin, MaxViT) are not CNNs and are left out.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import run_script
from rlprune.evaluation.candidates import Candidate
from rlprune.evaluation.splits import from_tensors
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import make_config
from rlprune.models.specs import build_model
from rlprune.reports.export import export_model

NOT_CNN = ("vit_", "swin_", "maxvit_")
AT_299 = ("inception_v3",)


def torchvision_models() -> types.ModuleType:
    """``torchvision.models``, imported without torchvision's compiled ops if need be."""
    try:
        import torchvision.models as models

        return models
    except Exception:  # the CUDA-built wheel's ops do not load: skip torchvision/__init__
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.submodule_search_locations is None:
            raise SystemExit(
                "error: torchvision is not installed; pip install torchvision "
                "(only its model definitions are used)"
            ) from None
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["torchvision"] = package
        import torchvision.models as models

        return models


def cnn_names(models: types.ModuleType) -> list[str]:
    """Every classification model in ``torchvision.models`` that is a CNN."""
    names: list[str] = models.list_models(module=models)
    return [n for n in names if not n.startswith(NOT_CNN)]


def build(models: types.ModuleType | None, name: str, size: int = 224) -> nn.Module:
    """``name`` with random weights and 10 classes (no auxiliary heads): a torchvision
    model name, or a model spec (``file.py:factory``, ``pkg.module:factory``)."""
    if ":" in name:
        torch.manual_seed(0)
        spec_model: nn.Module = build_model(name, in_channels=3, num_classes=10, input_size=size)
        return spec_model.eval()
    assert models is not None
    kwargs: dict[str, object] = {"num_classes": 10, "weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    torch.manual_seed(0)
    model: nn.Module = models.get_model(name, **kwargs)
    return model.eval()


def flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass as `torch.utils.flop_counter` counts them."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
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


def check(models: types.ModuleType | None, name: str, args: argparse.Namespace) -> Row:
    """Analyse, search, prune, count and export one model."""
    size = 299 if name in AT_299 else args.size
    row = Row(name, size)
    try:
        model = build(models, name, size)
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
            done, info = False, {}
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
        row.flops_ratio = flops(pruned.model, example) / flops(model, example)
        if row.flops_ratio > args.target * 1.01:
            row.status = f"over budget: FLOPs ratio {row.flops_ratio:.3f}"
        with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(pruned.model, example, out, onnx=False)
    except Exception as exc:  # one row per model, whatever breaks
        text = str(exc).strip().splitlines()
        row.status = f"{type(exc).__name__}: {text[0] if text else ''}"[:120]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated names (default: every CNN)")
    parser.add_argument("--size", type=int, default=64, help="input size (inception_v3: 299)")
    parser.add_argument("--target", type=float, default=0.5, help="MACs target")
    parser.add_argument("--episodes", type=int, default=3, help="random-action episodes")
    parser.add_argument("--images", type=int, default=8, help="images per split")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models.split(",") if args.models else None
    models = None if names and all(":" in n for n in names) else torchvision_models()
    if names is None:
        assert models is not None
        names = cnn_names(models)
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
    if len(ok) < len(rows):
        raise SystemExit(1)


if __name__ == "__main__":
    raise SystemExit(run_script(main))
