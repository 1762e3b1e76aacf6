"""Model zoo: architectures, model-spec resolution, weight files, fit checks."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rlprune.errors import ModelError
from rlprune.evaluation.splits import check_model_fits
from rlprune.models import zoo
from rlprune.models.specs import build_model, resolve_factory
from rlprune.models.weights import load_weights, save_weights
from rlprune.models.zoo import MODELS

REPO_ROOT = Path(__file__).resolve().parents[1]
CUSTOM_MODEL = REPO_ROOT / "examples" / "custom_model.py"
SHAPES = [(1, 8, 8), (1, 28, 28)]


def build(spec: str, shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = 10) -> nn.Module:
    return build_model(spec, in_channels=shape[0], num_classes=num_classes, input_size=shape[1])


def execution_order(model: nn.Module, shape: tuple[int, int, int]) -> list[nn.Module]:
    """Leaf modules in the order a forward pass runs them."""
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _in, _out: order.append(mod))
        for m in model.modules()
        if not list(m.children())
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, *shape))
    for hook in hooks:
        hook.remove()
    return order


def write_module(tmp_path: Path, source: str, name: str = "user_model.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


# ------------------------------------------------------------------------- models


@pytest.mark.parametrize("shape", SHAPES, ids=["8x8", "28x28"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_zoo_model_forward_shape(name: str, shape: tuple[int, int, int]) -> None:
    model = build(name, shape)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(3, *shape)).shape == (3, 10)
    check_model_fits(model, shape, 10)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"torchvision"} - set(zoo.TRANSFORMERS)))
def test_zoo_model_structure(name: str) -> None:
    """BN after every conv (but a squeeze-excite gate's, on pooled maps), activation
    modules, and a Linear classifier executed last."""
    model = build(name, (3, 28, 28), num_classes=7)
    order = execution_order(model, (3, 28, 28))
    gates = {m for se in model.modules() if isinstance(se, zoo.SqueezeExcite) for m in se.modules()}
    assert isinstance(order[-1], nn.Linear) and order[-1].out_features == 7
    assert order[-1] is getattr(model, "classifier", None) or order[-1] is getattr(
        model, "fc", None
    )
    for module, following in zip(order, order[1:], strict=False):
        if isinstance(module, nn.Conv2d) and module not in gates:
            assert isinstance(following, nn.BatchNorm2d), f"{name}: conv not followed by BN"
    assert any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in order)


def test_vit_is_torchvisions_class_with_the_input_channels_asked() -> None:
    model = build("vit", (1, 28, 28), num_classes=7)
    assert type(model).__name__ == "VisionTransformer"
    order = execution_order(model, (1, 28, 28))
    assert order[0] is model.conv_proj and model.conv_proj.in_channels == 1
    assert isinstance(order[-1], nn.Linear) and order[-1].out_features == 7
    with pytest.raises(ModelError, match="multiple of patch_size"):
        zoo.vit(1, 10, 28, patch_size=5)


def test_digits_cnn_trains_quickly() -> None:
    from rlprune.data.datasets import load_dataset
    from rlprune.evaluation.splits import make_loader

    torch.manual_seed(0)
    splits = load_dataset("digits", seed=0)
    model = build("digits-cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(5):
        model.train()
        for x, y in make_loader(splits.train, 64, shuffle=True, seed=epoch):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    model.eval()
    x, y = splits.test.tensors
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95


@pytest.mark.parametrize(("depth", "blocks"), [(8, 3), (20, 9), (32, 15)])
def test_resnet_depth(depth: int, blocks: int) -> None:
    model = zoo.resnet(1, 10, 8, depth=depth, width=4)
    assert sum(isinstance(m, zoo.BasicBlock) for m in model.modules()) == blocks


@pytest.mark.parametrize("depth", [7, 21, 2])
def test_resnet_bad_depth(depth: int) -> None:
    with pytest.raises(ModelError, match=rf"resnet depth={depth} is invalid; use 6n \+ 2"):
        zoo.resnet(1, 10, 8, depth=depth)


def test_resnet20_is_depth_20() -> None:
    assert sum(isinstance(m, zoo.BasicBlock) for m in zoo.resnet20(1, 10, 8).modules()) == 9


def test_mobilenetv2_has_depthwise_and_residual_blocks() -> None:
    model = zoo.mobilenetv2(1, 10, 28)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(c.groups == c.in_channels > 1 for c in convs)
    assert any(b.use_residual for b in model.modules() if isinstance(b, zoo.InvertedResidual))


def test_mobilenetv1_depthwise_convs_prune_with_the_conv_feeding_them() -> None:
    from rlprune.evaluation.task import PruningTask
    from rlprune.mdp.settings import make_config
    from tests.conftest import synthetic_data

    torch.manual_seed(0)
    model = zoo.mobilenetv1(1, 10, 28, cfg=((16, 1), (32, 2)), stem_channels=8)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 2 and all(c.groups == c.in_channels for c in depthwise)
    config = make_config({"model": "mobilenetv1", "calibration_batches": 1, "batch_size": 8})
    task = PruningTask.from_model(model, synthetic_data(), config)
    # stem + 2 pointwise convs; each depthwise conv rides with the conv before it
    assert len(task.analysis.units) == 3
    assert sum(u.kind == "depthwise" for u in task.analysis.units) == 2
    half = [
        int(o[abs(o - c / 2).argmin()])
        for o, c in zip(task.candidates, task.max_channels, strict=True)
    ]
    pruned = task.prune(half, count=True)
    after = [m for m in pruned.model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert all(c.groups == c.in_channels == c.out_channels for c in after)
    assert pruned.macs < 0.5 * task.analysis.macs


def test_ghost_modules_prune_each_source_channel_with_its_depthwise_copy() -> None:
    """A ghost module concatenates a layer with its depthwise copy, and a residual stream
    adds that concat: its channels are tied in pairs. Each unit is rooted at the source,
    so every layer prunes (none frozen) and the MACs model is exact."""
    from rlprune.evaluation.task import PruningTask
    from rlprune.mdp.settings import make_config
    from tests.conftest import synthetic_data

    torch.manual_seed(0)
    cfg = ((3, 16, 16, 0, 1), (3, 32, 24, 1, 2), (3, 48, 24, 0, 1))
    model = zoo.ghostnet(1, 10, 28, cfg=cfg, last_channels=64, pad_to=32)
    config = make_config({"model": "ghostnet", "calibration_batches": 1, "batch_size": 8})
    task = PruningTask.from_model(model, synthetic_data(), config)
    assert task.analysis.frozen == ()
    assert task.analysis.mac_model.exact
    ghosts = [m for m in model.modules() if isinstance(m, zoo.GhostModule)]
    assert len(ghosts) == 6
    half = [
        int(o[abs(o - c / 2).argmin()])
        for o, c in zip(task.candidates, task.max_channels, strict=True)
    ]
    pruned = task.prune(half, count=True)
    assert pruned.macs == round(task.analysis.mac_model.macs(np.asarray(half)))
    assert pruned.macs < 0.5 * task.analysis.macs
    for ghost in (m for m in pruned.model.modules() if isinstance(m, zoo.GhostModule)):
        primary, cheap = ghost.primary[0], ghost.cheap[0]
        assert primary.out_channels == cheap.in_channels == cheap.groups == cheap.out_channels
    assert pruned.model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_convmixer_is_isotropic_with_one_unit_per_layer() -> None:
    model = zoo.convmixer(1, 10, 28, dim=32, depth=3, kernel=5, patch=2)
    shapes = {tuple(m.weight.shape[2:]) for m in model.modules() if isinstance(m, nn.Conv2d)}
    assert shapes == {(2, 2), (5, 5), (1, 1)}
    from rlprune.pruning.analysis import analyse

    analysis = analyse(model.eval(), torch.randn(1, 1, 28, 28))
    # the stem and each block's pointwise conv; every depthwise conv rides with its input
    assert [u.out_channels for u in analysis.units] == [32] * 4
    with pytest.raises(ModelError, match="kernel=4 is even"):
        zoo.convmixer(1, 10, 28, kernel=4)


def test_regnet_has_grouped_bottlenecks_that_prune_by_whole_groups() -> None:
    from rlprune.evaluation.task import PruningTask
    from rlprune.mdp.settings import make_config
    from tests.conftest import synthetic_data

    torch.manual_seed(0)
    model = zoo.regnet(1, 10, 28, widths=(16, 32), depths=(1, 2), group_width=8)
    grouped = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert grouped and all(c.in_channels // c.groups == 8 for c in grouped)
    assert sum(isinstance(m, zoo.XBlock) for m in model.modules()) == 3
    config = make_config({"model": "regnet", "calibration_batches": 1, "batch_size": 8})
    task = PruningTask.from_model(model, synthetic_data(), config)
    half = [
        int(o[abs(o - c / 2).argmin()])
        for o, c in zip(task.candidates, task.max_channels, strict=True)
    ]
    pruned = task.prune(half, count=True)
    groups = [m for m in pruned.model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert [g.groups for g in groups] == [c.groups for c in grouped]
    assert all(g.in_channels % g.groups == 0 for g in groups)
    assert pruned.macs < task.analysis.macs


@pytest.mark.parametrize(
    ("widths", "depths", "match"),
    [((16, 32), (1,), "same length"), ((12,), (1,), "not a multiple of group_width")],
)
def test_regnet_bad_shape(widths: tuple[int, ...], depths: tuple[int, ...], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        zoo.regnet(1, 10, 28, widths=widths, depths=depths)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [((16, "X"), "vgg cfg entry 'X'"), (("M",), "has no conv layer"), ((0,), "entry 0")],
)
def test_vgg_bad_cfg(cfg: tuple[int | str, ...], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        zoo.vgg(1, 10, 8, cfg=cfg)


def test_bad_model_argument() -> None:
    with pytest.raises(ModelError, match="num_classes=0 is invalid"):
        build("digits-cnn", num_classes=0)


# ------------------------------------------------------------------- model specs


def test_resolve_registry_name() -> None:
    assert resolve_factory("vgg") is zoo.vgg
    assert resolve_factory(" digits-cnn ") is zoo.digits_cnn


def test_resolve_module_attr() -> None:
    assert resolve_factory("rlprune.models.zoo:vgg") is zoo.vgg


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_resolve_file_path(absolute: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    path = str(CUSTOM_MODEL) if absolute else "examples/custom_model.py"
    model = build_model(f"{path}:build", in_channels=1, num_classes=10, input_size=28)
    check_model_fits(model, (1, 28, 28), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert any(c.groups == c.in_channels > 1 for c in convs)  # a depthwise conv


def test_build_passes_only_accepted_arguments(tmp_path: Path) -> None:
    path = write_module(
        tmp_path,
        """
        from torch import nn

        def no_args():
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

        def classes_only(num_classes, hidden=4):
            layers = [nn.Flatten(), nn.Linear(64, hidden), nn.Linear(hidden, num_classes)]
            return nn.Sequential(*layers)

        def anything(**kwargs):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, kwargs["num_classes"]))
        """,
    )
    assert isinstance(build(f"{path}:no_args"), nn.Module)
    model = build_model(
        f"{path}:classes_only", in_channels=1, num_classes=3, input_size=8, kwargs={"hidden": 5}
    )
    check_model_fits(model, (1, 8, 8), 3)
    check_model_fits(build(f"{path}:anything", num_classes=4), (1, 8, 8), 4)


def test_build_passes_kwargs_to_zoo_factory() -> None:
    model = build_model(
        "vgg", in_channels=1, num_classes=10, input_size=8, kwargs={"cfg": (8, "M"), "hidden": 6}
    )
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 1
    check_model_fits(model, (1, 8, 8), 10)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("resnet99", r"unknown model 'resnet99'; use one of \[.*'digits-cnn'.*\]"),
        ("rlprune.models.zoo:", "model spec 'rlprune.models.zoo:' is incomplete"),
        ("no_such_package_xyz.models:build", r"cannot import module .*ModuleNotFoundError"),
        ("rlprune.models.zoo:no_such_factory", "has no attribute 'no_such_factory'"),
        ("rlprune.models.zoo:MODELS", "rlprune.models.zoo:MODELS is a dict, not callable"),
        ("missing/model.py:build", r"model file .*missing/model.py' not found"),
    ],
    ids=["unknown", "incomplete", "no-module", "no-attr", "not-callable", "no-file"],
)
def test_resolve_errors(spec: str, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        resolve_factory(spec)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("def build(:\n", "SyntaxError"),
    ],
    ids=["raises", "syntax"],
)
def test_resolve_file_import_failure(tmp_path: Path, source: str, match: str) -> None:
    path = write_module(tmp_path, source)
    with pytest.raises(ModelError, match=rf"cannot import model file .*{match}") as info:
        resolve_factory(f"{path}:build")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        ("not_a_module", None, "returned a str, not a torch.nn.Module"),
        ("fails", None, "failed to build .*ValueError: bad width"),
        ("no_args", {"width": 3}, r"takes no argument\(s\) \['width'\]"),
    ],
)
def test_build_errors(
    tmp_path: Path, factory: str, kwargs: dict[str, int] | None, match: str
) -> None:
    path = write_module(
        tmp_path,
        """
        def not_a_module(num_classes):
            return "model"

        def fails():
            raise ValueError("bad width")

        def no_args():
            return None
        """,
    )
    with pytest.raises(ModelError, match=match):
        build_model(f"{path}:{factory}", in_channels=1, num_classes=10, input_size=8, kwargs=kwargs)


# ------------------------------------------------------------------------ weights


def test_weights_roundtrip_with_metadata(tmp_path: Path) -> None:
    source = build("digits-cnn")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "nested" / "dir" / "w.pt"
    save_weights(source, path, metadata={"spec": "digits-cnn", "acc": 0.9, "shape": (1, 8, 8)})
    assert [p.name for p in path.parent.iterdir()] == ["w.pt"]  # no temp file left behind

    target = build("digits-cnn")
    load_weights(target, path)
    for (name, a), (_, b) in zip(
        source.state_dict().items(), target.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    payload = torch.load(path, map_location="cpu", weights_only=True)
    assert payload["metadata"] == {"spec": "digits-cnn", "acc": 0.9, "shape": [1, 8, 8]}


def test_load_plain_state_dict(tmp_path: Path) -> None:
    source = build("resnet20")
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    load_weights(build("resnet20"), tmp_path / "plain.pt")


@pytest.mark.parametrize(
    ("saved", "match"),
    [
        (
            lambda: zoo.digits_cnn(1, 10, 8, width=16),
            r"16 shape mismatch\(es\) \[features.0.weight \(16, 1, 3, 3\) vs model \(32, 1, 3, 3\)",
        ),
        (lambda: zoo.digits_cnn(1, 5, 8), r"2 shape mismatch.*classifier.weight \(5, 64\)"),
        (lambda: zoo.vgg(1, 10, 8), r"18 unexpected key\(s\) .*\(\+15 more\)\]; 7 shape"),
        (lambda: nn.Linear(64, 10), r"20 missing key\(s\) \[features.0.weight"),
    ],
    ids=["width", "classes", "bigger-net", "other-net"],
)
def test_load_mismatched_weights(
    tmp_path: Path, saved: Callable[[], nn.Module], match: str
) -> None:
    save_weights(saved(), tmp_path / "w.pt")
    with pytest.raises(ModelError, match=rf"does not fit the ConvClassifier model: .*{match}"):
        load_weights(build("digits-cnn"), tmp_path / "w.pt")


class _Opaque:
    """Not allowed by ``weights_only=True``: loading it would need arbitrary unpickling."""


@pytest.mark.parametrize(
    ("write", "match"),
    [
        (lambda p: p.write_bytes(b"not a torch file"), "cannot read weights file"),
        (lambda p: torch.save({"state_dict": _Opaque()}, p), "cannot read weights file"),
        (lambda p: torch.save([1, 2, 3], p), "holds a list, not a state dict"),
        (lambda p: None, "weights file .* not found"),
    ],
    ids=["corrupt", "pickled-object", "not-a-dict", "missing"],
)
def test_load_bad_weight_file(tmp_path: Path, write: Callable[[Path], object], match: str) -> None:
    path = tmp_path / "w.pt"
    write(path)
    with pytest.raises(ModelError, match=match) as info:
        load_weights(build("digits-cnn"), path)
    assert "\n" not in str(info.value)


def test_save_rejects_non_json_metadata(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_weights(build("digits-cnn"), tmp_path / "w.pt", metadata={"t": torch.zeros(1)})
    assert not any(tmp_path.iterdir())


# -------------------------------------------------------------------- fit checks


def test_check_model_fits_wrong_classes() -> None:
    with pytest.raises(ModelError, match=r"output shape \(2, 5\).*expected \(2, 10\)"):
        check_model_fits(build("digits-cnn", num_classes=5), (1, 8, 8), 10)


def test_check_model_fits_wrong_channels() -> None:
    model = build("resnet20", (3, 8, 8))
    model.train()
    with pytest.raises(ModelError, match=r"model fails on input shape \(1, 8, 8\): RuntimeError"):
        check_model_fits(model, (1, 8, 8), 10)
    assert model.training  # mode restored


def test_check_model_fits_non_tensor_output() -> None:
    class TupleOut(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ModelError, match="returns a tuple"):
        check_model_fits(TupleOut(), (1, 8, 8), 10)
