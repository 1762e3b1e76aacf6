"""Vision transformers: attention heads and MLP widths as units (issue #39).

Tiny ViTs from torchvision's ``VisionTransformer`` class (rlprune's zoo ``vit``) on 8x8
synthetic images: the head and MLP units, their exact MACs (checked against
``torch.utils.flop_counter``, independent of torch-pruning), whole heads and at least
one per block, an attention rlprune does not know, the budget, every search method, and
the export round trip.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from gymnasium.utils.env_checker import check_env as gym_check_env
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from rlprune.env.pruning_env import PruningEnv
from rlprune.evaluation.candidates import Candidate
from rlprune.evaluation.task import PruningTask
from rlprune.mdp.features import COLUMN, FEATURES_V2, features_for
from rlprune.mdp.settings import make_config
from rlprune.models.zoo import vit
from rlprune.presets.loader import GENERAL_POLICY
from rlprune.pruning.analysis import analyse
from rlprune.pruning.attention import AttentionCore, HeadAttention, convert_attention
from rlprune.pruning.macs import leaf_macs
from rlprune.pruning.surgeon import EMBEDDING_STAYS, Surgeon
from rlprune.reports.export import export_model, load_exported
from rlprune.search.base import SearchOptions
from rlprune.search.methods import get_method
from tests.conftest import synthetic_data

SHAPE = (1, 8, 8)
EXAMPLE = torch.zeros(1, *SHAPE)
HEADS, DIM = 4, 16  # head_dim 4


def tiny_vit(heads: int = HEADS, depth: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return vit(
        in_channels=1, input_size=8, patch_size=4, depth=depth, heads=heads, dim=DIM, mlp_dim=32
    ).eval()


@pytest.fixture(scope="module")
def vit_task() -> PruningTask:
    config = make_config(
        {
            "name": "test-vit",
            "model": "vit",
            "target": 0.5,
            "calibration_batches": 1,
            "batch_size": 8,
            "val_size": 16,
            "min_keep": 0.1,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a ViT analyses without a warning
        return PruningTask.from_model(tiny_vit(), synthetic_data(SHAPE), config)


def matmul_macs(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of the conv, linear and attention products, per image, from
    ``torch.utils.flop_counter`` (the math kernel, whose products it sees)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x)
    return counter.get_total_flops() / 2 / x.shape[0]


def counted_products(model: nn.Module, x: torch.Tensor) -> float:
    """The same products from rlprune's per-leaf count, less its bias terms."""
    leaves = leaf_macs(model, x)
    total = 0.0
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            total += leaves[name] - (module.out_features if module.bias is not None else 0)
        elif isinstance(module, nn.Conv2d):
            bias = module.out_channels * (8 // 4) ** 2 if module.bias is not None else 0
            total += leaves[name] - bias
        elif isinstance(module, AttentionCore):
            total += leaves[name]
    return total


def test_heads_and_mlp_widths_are_the_units_and_the_embedding_stays(
    vit_task: PruningTask,
) -> None:
    units = vit_task.analysis.units
    assert [u.kind for u in units] == ["attention", "linear"] * 2
    for u in units[::2]:
        assert u.out_channels == DIM and u.groups == DIM // HEADS
        assert {m.rsplit(".", 1)[1] for m in u.modules} == {"q", "k", "v"}
        assert u.input_hw == (5, 1)  # 4 patches and the class token
    assert [u.out_channels for u in units[1::2]] == [32, 32]
    reasons = dict(vit_task.analysis.frozen)
    assert list(reasons.values()) == [EMBEDDING_STAYS]
    assert vit_task.analysis.mac_model.exact


def test_conversion_keeps_the_outputs() -> None:
    model = tiny_vit()
    converted = convert_attention(model)
    assert converted is not model
    assert not any(isinstance(m, nn.MultiheadAttention) for m in converted.modules())
    assert any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(converted(x), model(x), atol=1e-5)
    plain = nn.Linear(4, 4)
    assert convert_attention(plain) is plain
    attention = next(m for m in converted.modules() if isinstance(m, HeadAttention))
    tokens = torch.randn(2, 5, DIM)
    with pytest.raises(ValueError, match="does not take attention masks"):
        attention(tokens, tokens, tokens, attn_mask=torch.zeros(5, 5, dtype=torch.bool))


def test_macs_model_is_exact_and_matches_flop_counter(vit_task: PruningTask) -> None:
    rng = np.random.default_rng(0)
    x = torch.randn(2, *SHAPE)
    assert counted_products(vit_task.model, x[:1]) == matmul_macs(vit_task.model, x)
    for _ in range(4):
        channels = [int(rng.choice(options)) for options in vit_task.candidates]
        pruned = vit_task.prune(channels, count=True)
        assert vit_task.analysis.mac_model.macs(np.array(channels)) == pytest.approx(
            pruned.macs, abs=0.5
        )
        # attention's token-by-token products included, independent of torch-pruning
        assert counted_products(pruned.model, x[:1]) == matmul_macs(pruned.model, x)


def test_whole_heads_go_and_the_head_count_follows(vit_task: PruningTask) -> None:
    surgeon = vit_task.surgeon
    assert surgeon is not None
    unit = vit_task.analysis.units[0]
    plan = surgeon.plans[unit.key]
    head_dim = unit.groups
    result = surgeon.prune({unit.key: 2 * head_dim})
    attention = dict(result.model.named_modules())[unit.name.rsplit(".", 1)[0]]
    assert isinstance(attention, HeadAttention)
    assert attention.num_heads == 2 and attention.q.out_features == 2 * head_dim
    assert attention.out_proj.out_features == DIM  # the embedding stays
    # the pruned model equals the original with the removed heads' values zeroed
    removed = plan.pruned(2 * head_dim)
    assert sorted(set(removed // head_dim)) == sorted(plan.order[:2].tolist())
    reference = vit_task.surgeon.prune({}).model  # type: ignore[union-attr]
    v = dict(reference.named_modules())[unit.name.rsplit(".", 1)[0] + ".v"]
    with torch.no_grad():
        v.weight[removed] = 0
        v.bias[removed] = 0
        x = torch.randn(4, *SHAPE)
        assert torch.allclose(result.model(x), reference(x), atol=1e-5)


def test_at_least_one_head_per_block(vit_task: PruningTask) -> None:
    surgeon = vit_task.surgeon
    assert surgeon is not None
    heads = [u for u in vit_task.analysis.units if u.kind == "attention"]
    counts = surgeon.counts({u.name: 0.01 for u in heads})
    assert set(counts.values()) == {DIM // HEADS}
    for u, n in zip(vit_task.analysis.units, vit_task.min_channels, strict=True):
        if u.kind == "attention":
            assert n == u.groups
    pruned = vit_task.prune(vit_task.min_channels).model
    assert [m.num_heads for m in pruned.modules() if isinstance(m, HeadAttention)] == [1, 1]
    assert pruned(torch.randn(2, *SHAPE)).shape == (2, 10)


def test_a_single_head_is_frozen() -> None:
    analysis = analyse(tiny_vit(heads=1), EXAMPLE)
    assert [u.kind for u in analysis.units] == ["linear", "linear"]
    assert any("single attention head" in why for _, why in analysis.frozen)


class QKVAttention(nn.Module):
    """An attention whose heads rlprune cannot read: one qkv layer split by the input's
    width (``c // num_heads``), which pruning heads does not change."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        out: torch.Tensor = self.proj(out)
        return out


class CustomViT(nn.Module):
    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.patch = nn.Conv2d(1, dim, 4, 4)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = QKVAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Linear(32, dim))
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        out: torch.Tensor = self.head(x.mean(1))
        return out


def test_unknown_attention_keeps_its_heads_and_the_rest_is_pruned() -> None:
    torch.manual_seed(0)
    model = CustomViT().eval()
    with pytest.warns(UserWarning, match="cannot be pruned"):
        analysis = analyse(model, EXAMPLE)
    assert [u.name for u in analysis.units] == ["mlp.0"]
    reasons = dict(analysis.frozen)
    assert (
        "heads rlprune cannot read" in reasons["attn.qkv"] and "QKVAttention" in reasons["attn.qkv"]
    )
    assert "\n" not in reasons["attn.qkv"]
    assert analysis.surgeon is not None
    pruned = analysis.surgeon.prune({"mlp.0": 8}).model
    assert pruned(torch.randn(2, *SHAPE)).shape == (2, 10)


class TimmAttention(nn.Module):
    """timm's layout: one qkv layer, heads split by the stored head count and width."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2)
        out = self.proj(out.reshape(b, n, self.num_heads * self.head_dim))
        return out


def test_a_qkv_attention_with_a_head_count_loses_whole_heads() -> None:
    torch.manual_seed(0)
    model = CustomViT().eval()
    model.attn = TimmAttention(DIM, HEADS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = analyse(model, EXAMPLE)
    assert [(u.name, u.kind, u.groups) for u in analysis.units] == [
        ("attn.qkv", "attention", 3 * DIM // HEADS),
        ("mlp.0", "linear", 1),
    ]
    assert [why for _, why in analysis.frozen] == [EMBEDDING_STAYS]  # patch, mlp.2, proj
    surgeon = analysis.surgeon
    assert surgeon is not None
    d = DIM // HEADS
    pruned = surgeon.prune({"attn.qkv": 3 * d}).model  # one head of four
    assert pruned.attn.num_heads == 1 and pruned.attn.qkv.out_features == 3 * d
    assert model.attn.num_heads == HEADS  # the original is untouched
    kept = int(surgeon.plans["attn.qkv"].order[-1])  # the most important head stays
    reference = surgeon.prune({}).model
    with torch.no_grad():  # the others' values zeroed: the same outputs
        for head in set(range(HEADS)) - {kept}:
            rows = slice(2 * DIM + head * d, 2 * DIM + (head + 1) * d)
            reference.attn.qkv.weight[rows] = 0
            reference.attn.qkv.bias[rows] = 0
        x = torch.randn(3, *SHAPE)
        assert torch.allclose(pruned(x), reference(x), atol=1e-5)
    # a trial prune leaves the traced model's head count as it was
    with surgeon.trial(surgeon.model, {"attn.qkv": 2 * 3 * d}) as trial:
        assert trial.attn.num_heads == 2
    assert surgeon.model.attn.num_heads == HEADS


def test_budget_guarantee_under_random_actions(vit_task: PruningTask) -> None:
    env = PruningEnv(task=vit_task)
    rng = np.random.default_rng(0)
    x = torch.randn(2, *SHAPE)
    full = matmul_macs(vit_task.model, x)
    for episode in range(3):
        env.reset(seed=episode)
        done, info = False, {}
        while not done:
            _, _, done, _, info = env.step(rng.uniform(-1, 1, size=1).astype(np.float32))
        candidate = Candidate.from_dict(info)
        pruned = vit_task.prune(candidate.channels, count=True)
        assert pruned.macs == candidate.macs <= 0.5 * vit_task.analysis.macs
        assert matmul_macs(pruned.model, x) / full <= 0.5 * 1.01


@pytest.mark.parametrize("features", [2, 3])
def test_env_passes_gymnasiums_checker_on_a_vit(features: int, vit_task: PruningTask) -> None:
    config = make_config({"name": "test-vit", "model": "vit", "target": 0.5, "features": features})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(PruningEnv(task=vit_task, config=config), skip_render_check=True)


def test_feature_set_3_describes_heads_and_set_2_is_its_prefix(vit_task: PruningTask) -> None:
    assert features_for(3)[: len(FEATURES_V2)] == FEATURES_V2
    config = make_config({"name": "test-vit", "model": "vit", "target": 0.5, "features": 3})
    env = PruningEnv(task=vit_task, config=config)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (25,)
    assert obs[COLUMN["attention"]] == 1.0
    assert obs[COLUMN["log_channel_step"]] == pytest.approx(np.log2(DIM // HEADS) / 8)
    assert obs[COLUMN["log_input_size"]] == pytest.approx(np.log2(5) / 24)
    obs, *_ = env.step(np.zeros(1, dtype=np.float32))
    assert obs[COLUMN["attention"]] == 0.0 and obs[COLUMN["log_channel_step"]] == 0.0


@pytest.mark.parametrize(
    "method",
    ["ppo", "random", "eagleeye", "tpe", "cmaes", "uniform", "magnitude", "sensitivity"],
)
def test_every_method_runs_on_a_vit(method: str, vit_task: PruningTask) -> None:
    search = get_method(method)
    # ppo first pays for its probes (units x 3), then plays episodes
    evals = max(search.min_evals(vit_task), 4) + (16 if method == "ppo" else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = search.search(vit_task, 0.5, evals, seed=0)
    assert 0 < result.evaluations <= evals
    assert result.best.macs <= 0.5 * vit_task.analysis.macs
    pruned = vit_task.prune(result.best.channels).model
    assert pruned(torch.randn(2, *SHAPE)).shape == (2, 10)


@pytest.mark.parametrize("method", ["transfer", "transfer-refine"])
def test_the_shipped_general_policy_plays_a_vit(method: str, vit_task: PruningTask) -> None:
    """The shipped policy (feature set 2) loads and plays a ViT, zero-shot or refined."""
    assert json.loads((GENERAL_POLICY / "policy.json").read_text())["feature_version"] == 2
    options = SearchOptions(policy=str(GENERAL_POLICY), adapt_episodes=3)
    search = get_method(method)
    evals = search.min_evals(vit_task) + 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = search.search(vit_task, 0.5, evals, seed=0, options=options)
    assert result.best.macs <= 0.5 * vit_task.analysis.macs
    assert vit_task.prune(result.best.channels).model(torch.randn(2, *SHAPE)).shape == (2, 10)


def test_pruned_vit_exports_and_reloads_with_the_same_outputs(
    vit_task: PruningTask, tmp_path: Path
) -> None:
    channels = [options[len(options) // 2] for options in vit_task.candidates]
    pruned = vit_task.prune(channels).model.eval()
    files = export_model(pruned, EXAMPLE, tmp_path / "out", onnx=False)
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        want = pruned(x)
        assert torch.allclose(load_exported(files.program)(x), want, atol=1e-5)
        if files.torchscript is not None:
            assert torch.allclose(torch.jit.load(str(files.torchscript))(x), want, atol=1e-5)
    layers = json.loads(files.architecture.read_text())["layers"]
    heads = [layer["num_heads"] for layer in layers if "num_heads" in layer]
    assert heads == [m.num_heads for m in pruned.modules() if isinstance(m, HeadAttention)]


def test_surgeon_alone_needs_the_converted_model() -> None:
    converted = convert_attention(tiny_vit())
    surgeon = Surgeon(converted, EXAMPLE)
    assert any(p.info.block > 1 for p in surgeon.plans.values())
    # unconverted: the MultiheadAttention's group (the embedding) is frozen, not shrunk
    raw = Surgeon(tiny_vit(), EXAMPLE)
    assert all(p.info.block == 1 for p in raw.plans.values())
    assert any("not converted" in why for why in raw.failed.values())


def test_multihead_attention_with_other_key_widths_is_left_alone() -> None:
    class Cross(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch = nn.Conv2d(1, DIM, 4, 4)
            self.attn = nn.MultiheadAttention(DIM, HEADS, kdim=8, vdim=8, batch_first=True)
            self.memory = nn.Parameter(torch.randn(1, 3, 8))
            self.mlp = nn.Sequential(nn.Linear(DIM, 32), nn.GELU(), nn.Linear(32, DIM))
            self.head = nn.Linear(DIM, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.patch(x).flatten(2).transpose(1, 2)
            memory = self.memory.expand(x.shape[0], -1, -1)
            x = x + self.attn(x, memory, memory, need_weights=False)[0]
            out: torch.Tensor = self.head(self.mlp(x).mean(1))
            return out

    torch.manual_seed(0)
    model = Cross().eval()
    assert convert_attention(model) is model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyse(model, EXAMPLE)
    names = [u.name for u in analysis.units]
    assert "mlp.0" in names and "patch" not in names  # the embedding is not shrunk
    assert any("kdim/vdim" in why for _, why in analysis.frozen)
