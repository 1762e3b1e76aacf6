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
from rlprune.pruning.analysis import ModelAnalysis, analyse
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


def _analyse_with(
    name: str, prober: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[nn.Module, ModelAnalysis]:
    """``name``'s analysis with its probes forced onto a weightless ``meta`` copy or onto
    the real model (which one the analysis picks depends on timing)."""
    import copy

    import rlprune.pruning.analysis as analysis_module

    def forced(
        model: nn.Module, inputs: torch.Tensor, *_: object
    ) -> tuple[nn.Module, torch.Tensor]:
        if prober == "meta":
            return copy.deepcopy(model).to("meta"), inputs.to("meta")
        return model, inputs

    monkeypatch.setattr(analysis_module, "_prober", forced)
    torch.manual_seed(0)
    model = STRUCTURES[name]().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model, analyse(model, torch.zeros(1, *SHAPE))


GROUPED = ["grouped_after_concat", "grouped_after_strided_concat", "resnext_block"]


@pytest.mark.parametrize("name", GROUPED)
def test_frozen_units_do_not_depend_on_where_the_probes_ran(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 38: `info` froze the strided conv and `apply` did not, as the analysis probed
    on the real model in one and on a weightless copy in the other."""
    _, on_meta = _analyse_with(name, "meta", monkeypatch)
    _, on_real = _analyse_with(name, "real", monkeypatch)
    assert on_meta.frozen == on_real.frozen
    assert [u.name for u in on_meta.units] == [u.name for u in on_real.units]


@pytest.mark.parametrize("prober", ["meta", "real"])
@pytest.mark.parametrize("name", GROUPED)
def test_every_accepted_unit_prunes_alone_to_every_count(
    name: str, prober: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 38: sensitivity probes crashed pruning an accepted unit alone to a quarter."""
    _, analysis = _analyse_with(name, prober, monkeypatch)
    assert analysis.surgeon is not None and analysis.units
    x = torch.randn(2, *SHAPE)
    for unit in analysis.units:
        for n in range(unit.groups, unit.out_channels + 1, unit.groups):
            pruned = analysis.surgeon.prune({unit.key or unit.name: n}, count=False).model
            assert pruned(x).shape == (2, 10), (unit.name, n)


def test_a_concat_before_a_grouped_conv_freezes_the_units_it_splits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, analysis = _analyse_with("grouped_after_strided_concat", "meta", monkeypatch)
    frozen = dict(analysis.frozen)
    # each of the three is a part of the grouped conv's two groups: pruned alone, the
    # groups would differ in width
    assert {"down.0", "left.0", "right.0"} <= set(frozen)
    assert "unevenly across its 2 groups" in frozen["down.0"]
    assert {u.name for u in analysis.units} == {"stem.0", "grouped.0"}
    # the surgeon itself refuses it, so every command that prunes sees the same units
    surgeon = Surgeon(model, torch.zeros(1, *SHAPE))
    assert "down.0" in surgeon.failed and "down.0" not in surgeon.plans


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
    """tools/check_architectures.py (torchvision's CNNs) on model specs instead."""
    nets = Path(__file__).parent / "nets.py"
    script = Path(__file__).parent.parent / "tools" / "check_architectures.py"
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


def test_build_classifier_takes_a_model_spec_without_torchvision() -> None:
    from rlprune.models.vision import build_classifier

    spec = f"{Path(__file__).parent / 'nets.py'}:shuffle_net"
    model = build_classifier(spec, size=16)
    assert not model.training  # eval mode: BatchNorm statistics stay as built
    x = torch.randn(2, 3, 16, 16)
    assert model(x).shape == (2, 10)
    assert torch.equal(build_classifier(spec, size=16)(x), model(x))  # seeded weights


def test_a_missing_torchvision_is_a_one_line_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import importlib.util

    from rlprune.models.vision import build_classifier, torchvision_models

    def absent(name: str) -> object:
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", absent)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="torchvision is not installed; pip install torchvision"):
        torchvision_models()
    with pytest.raises(ModelError, match="torchvision is not installed"):
        build_classifier("resnet18")  # a torchvision name needs it; a spec does not
