"""The structures of torchvision's CNNs, one small network each (tests/nets.py).

Each network is analysed, searched with random actions through the env, pruned for
real and run; its MACs model must match torch-pruning's count, and the pruned network's
FLOPs, counted by ``torch.utils.flop_counter`` (independent of torch-pruning), must
meet the target.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rlprune.cli import main
from rlprune.env.pruning_env import PruningEnv
from rlprune.errors import ModelError
from rlprune.evaluation.candidates import Candidate
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.settings import make_config
from rlprune.pruning.analysis import analyse
from rlprune.pruning.groups import build_graph, iter_groups
from rlprune.pruning.macs import leaf_macs
from rlprune.pruning.surgeon import Surgeon
from tests.conftest import synthetic_data
from tests.nets import STRUCTURES, channel_shuffle

TARGET = 0.5
SHAPE = (1, 16, 16)


def _task(name: str) -> PruningTask:
    torch.manual_seed(0)
    model = STRUCTURES[name](in_channels=1, num_classes=10).eval()
    config = make_config(
        {
            "name": f"test-{name}",
            "target": TARGET,
            "calibration_batches": 1,
            "batch_size": 8,
            "val_size": 16,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PruningTask.from_model(model, synthetic_data(SHAPE), config)


def _flops(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_structure_prunes_meets_the_budget_and_runs(name: str) -> None:
    task = _task(name)
    analysis = task.analysis
    assert analysis.units and analysis.mac_model.exact
    env = PruningEnv(task=task)
    rng = np.random.default_rng(0)
    for episode in range(3):
        env.reset(seed=episode)
        done, info = False, {}
        while not done:
            _, _, done, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        candidate = Candidate.from_dict(info)
        pruned = task.prune(candidate.channels, count=True)
        # the fitted MACs model (used during search) equals torch-pruning's count
        assert pruned.macs == candidate.macs
        assert candidate.macs_ratio <= TARGET
        x = torch.randn(2, *SHAPE)
        assert pruned.model(x).shape == (2, 10)
        ratio = _flops(pruned.model, x) / _flops(task.model, x)
        assert ratio <= TARGET * 1.01
    # random widths too: the MACs model is exact everywhere, not just where the env went
    for _ in range(3):
        channels = [int(rng.choice(options)) for options in task.candidates]
        measured = task.prune(channels, count=True).macs
        assert analysis.mac_model.macs(np.array(channels)) == pytest.approx(measured, abs=0.5)


@pytest.mark.parametrize("name", ["grouped_after_concat", "resnext_block"])
def test_grouped_convs_keep_their_groups(name: str) -> None:
    task = _task(name)
    grouped = {n: m.groups for n, m in task.model.named_modules() if getattr(m, "groups", 1) > 1}
    units = [u for u in task.analysis.units if u.groups > 1]
    assert units, "a unit feeding a grouped conv must carry its channel groups"
    # every unit at its smallest width: still whole groups
    pruned = task.prune(task.min_channels, count=True).model
    layers = dict(pruned.named_modules())
    for layer, groups in grouped.items():
        conv = layers[layer]
        assert conv.groups == groups
        assert conv.in_channels % groups == 0 and conv.out_channels % groups == 0
    for u, n in zip(task.analysis.units, task.min_channels, strict=True):
        assert n % u.groups == 0
    assert pruned(torch.randn(1, *SHAPE)).shape == (1, 10)


def test_grouped_conv_prunes_the_same_positions_in_every_group() -> None:
    model = STRUCTURES["resnext_block"]().eval()
    surgeon = Surgeon(model, torch.zeros(1, *SHAPE))
    plan = next(p for p in surgeon.plans.values() if p.info.groups == 8)
    removed = plan.pruned(16)  # 32 channels in 8 groups of 4: keep 2 per group
    assert len(removed) == 16
    per_group = removed.reshape(8, 2) % 4
    assert (per_group == per_group[0]).all()


def test_channel_shuffle_freezes_what_it_mixes_and_prunes_the_rest() -> None:
    with pytest.warns(UserWarning, match="cannot be pruned") as caught:
        analysis = analyse(STRUCTURES["channel_shuffle"]().eval(), torch.zeros(1, *SHAPE))
    assert len([w for w in caught if "cannot be pruned" in str(w.message)]) == 1  # once
    frozen = dict(analysis.frozen)
    assert "stem.0" in frozen and "channel shuffle" in frozen["stem.0"]
    assert "branch.3.0" in frozen  # the branch's output goes through the shuffle
    # the branch's internal width and the layer after the shuffle stay prunable
    assert [u.name for u in analysis.units] == ["branch.0.0", "tail.0"]
    assert not {u.name for u in analysis.units} & set(frozen)


def test_torch_pruning_alone_maps_the_shuffle_as_the_identity() -> None:
    """What freezing guards against: torch-pruning 1.6 traces through the shuffle as if
    it kept channel order (on torchvision's ShuffleNetV2 it divides by zero instead)."""
    import torch_pruning as tp

    model = STRUCTURES["channel_shuffle"]().eval()
    graph = tp.DependencyGraph().build_dependency(model, torch.zeros(1, *SHAPE))
    names = {m: n for n, m in model.named_modules()}
    coupled = [
        {names[dep.target.module] for dep, _ in group if dep.target.module in names}
        for group in graph.get_all_groups(root_module_types=(nn.Conv2d,))
    ]
    assert any({"stem.0", "branch.3.0"} <= names_ for names_ in coupled)
    ours = build_graph(model, torch.zeros(1, *SHAPE))  # records the shuffle instead
    failed: dict[str, str] = {}
    layers = {n for _, info in iter_groups(ours, model, failed=failed) for n in info.out_modules}
    assert layers == {"tail.0", "branch.0.0", "branch.1"}
    assert set(failed) >= {"stem.0", "branch.3.0"}


def test_a_network_with_every_unit_frozen_is_an_error() -> None:
    class AllShuffled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.head = nn.Conv2d(8, 10, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(channel_shuffle(self.conv(x), 2)).mean((2, 3))

    with pytest.raises(ModelError, match="no prunable unit.*frozen"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyse(AllShuffled().eval(), torch.zeros(1, *SHAPE))


def test_layer_scale_parameter_is_pruned_with_its_channels() -> None:
    task = _task("layer_scale")
    unit = task.analysis.unit("stem")
    channels = [u.out_channels for u in task.analysis.units]
    channels[unit.index] = 8
    pruned = task.prune(channels).model
    assert pruned.gamma.shape == (8, 1, 1)
    assert pruned(torch.randn(1, *SHAPE)).shape == (1, 10)


def test_surgeon_prunes_copies_and_leaves_the_model_alone() -> None:
    model = STRUCTURES["dense_concat"]().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    surgeon = Surgeon(model, torch.zeros(1, *SHAPE))
    keep = {key: plan.info.channels // 2 for key, plan in surgeon.plans.items()}
    first = surgeon.prune(keep)
    second = surgeon.prune(keep)
    assert first.model is not second.model and first.macs == second.macs
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # a trial prunes in place and restores
    with surgeon.trial(model, keep) as trial:
        assert sum(leaf_macs(trial, torch.zeros(1, *SHAPE)).values()) == first.macs
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sum(leaf_macs(model, torch.zeros(1, *SHAPE)).values()) > first.macs


def test_info_lists_frozen_layers_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{Path(__file__).parent / 'nets.py'}:shuffle_net"
    weights = tmp_path / "shuffle.pt"
    torch.manual_seed(0)
    torch.save(STRUCTURES["channel_shuffle"]().state_dict(), weights)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = ["info", "--env", "digits-cnn", "--model", spec, "--weights", str(weights)]
        assert main(args) == 0
    out = capsys.readouterr().out
    assert "frozen" in out and "stem.0" in out and "channel shuffle" in out


def test_sweep_script_prints_a_row_per_model_and_totals() -> None:
    """scripts/check_architectures.py (torchvision's CNNs) on model specs instead."""
    nets = Path(__file__).parent / "nets.py"
    script = Path(__file__).parent.parent / "scripts" / "check_architectures.py"
    specs = f"{nets}:shuffle_net,{nets}:dense_net"
    result = subprocess.run(
        [sys.executable, str(script), "--models", specs, "--size", "16", "--target", "0.6"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith(str(nets))]
    assert len(rows) == 2 and all(row.rstrip().endswith("ok") for row in rows)
    assert int(rows[0].split()[3]) > 0 and int(rows[1].split()[3]) == 0  # frozen layers
    assert "2/2 models ok; 1 with frozen layers" in result.stdout
