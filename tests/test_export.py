"""Export: torch.export and TorchScript files that run without rlprune, safe state dicts,
architecture, ONNX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from rlprune.errors import ConfigError, ModelError
from rlprune.files import atomic_path
from rlprune.models.specs import build_model
from rlprune.models.zoo import digits_cnn
from rlprune.pruning.analysis import analyse
from rlprune.pruning.surgeon import prune
from rlprune.reports import export
from rlprune.reports.export import ExportedFiles, architecture, export_model, load_exported

EXAMPLE = torch.zeros(1, 1, 8, 8)


@pytest.fixture(scope="module")
def pruned_model() -> nn.Module:
    """A zoo CNN pruned for real: narrower layers than its class would build."""
    torch.manual_seed(0)
    model = digits_cnn(width=8).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    units = analyse(model, EXAMPLE).units
    return prune(model, {u.name: 0.5 for u in units}, EXAMPLE).model.eval()


def batch(n: int) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_export_writes_files_and_torchscript_reproduces_model(
    pruned_model: nn.Module, tmp_path: Path
) -> None:
    files = export_model(pruned_model, EXAMPLE, tmp_path / "out", onnx=False)

    assert files.onnx is None
    assert files.names() == {
        "program": "pruned_model.pt2",
        "torchscript": "pruned_model.pt",
        "state_dict": "pruned_state_dict.pt",
        "architecture": "architecture.json",
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(files.names().values())
    assert files.torchscript is not None
    loaded = load_exported(files.torchscript)
    assert isinstance(loaded, torch.jit.ScriptModule)
    assert not loaded.training
    program = load_exported(files.program)
    for n in (1, 5):  # batch sizes the export never saw (it saw 2) and the trace never saw
        x = batch(n)
        with torch.no_grad():
            assert torch.allclose(loaded(x), pruned_model(x), atol=1e-5)
            assert torch.allclose(program(x), pruned_model(x), atol=1e-5)


def test_export_raises_no_warning(pruned_model: nn.Module, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        files = export_model(pruned_model, EXAMPLE, tmp_path, onnx=False)
        load_exported(files.program)
        assert files.torchscript is not None
        load_exported(files.torchscript)


def test_only_torchscripts_deprecation_warnings_are_silenced(
    pruned_model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever category a torch release gives them (FutureWarning shows by default)."""
    trace = torch.jit.trace

    def deprecated_trace(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(
            "`torch.jit.trace` is deprecated. Please switch to `torch.compile` or `torch.export`.",
            FutureWarning,
            stacklevel=2,
        )
        warnings.warn("an unrelated warning", UserWarning, stacklevel=2)
        return trace(*args, **kwargs)

    monkeypatch.setattr(torch.jit, "trace", deprecated_trace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_model(pruned_model, EXAMPLE, tmp_path, onnx=False)
    messages = [str(w.message) for w in caught]
    assert "an unrelated warning" in messages, messages
    assert not [m for m in messages if "torch.jit" in m], messages


def test_no_torchscript_without_torch_jit(
    pruned_model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "pruned_model.pt"
    stale.write_bytes(b"from an earlier export")
    monkeypatch.setattr(export, "torchscript_available", lambda: False)
    files = export_model(pruned_model, EXAMPLE, tmp_path, onnx=False)
    assert files.torchscript is None and not stale.exists()
    assert "torchscript" not in files.names() and files.program.is_file()
    with pytest.raises(ConfigError, match="torchscript=False"):
        export_model(pruned_model, EXAMPLE, tmp_path, onnx=False, torchscript=True)


def test_export_restores_train_mode(tmp_path: Path) -> None:
    model = digits_cnn(width=2).train()
    export_model(model, EXAMPLE, tmp_path, onnx=False)
    assert model.training


@pytest.mark.parametrize(
    "load",
    ["torch.export.load(sys.argv[1]).module()", 'torch.jit.load(sys.argv[1], map_location="cpu")'],
)
def test_exports_load_in_a_clean_process_without_rlprune(
    pruned_model: nn.Module, tmp_path: Path, load: str
) -> None:
    files = export_model(pruned_model, EXAMPLE, tmp_path / "export", onnx=False)
    x = batch(3)
    torch.save(x, tmp_path / "input.pt")
    # rlprune is installed (editable) in this environment, so isolation alone would not
    # hide it: a meta-path hook makes importing it fail, and the test checks it never was.
    script = textwrap.dedent(
        """
        import sys

        class BlockRlprune:
            def find_spec(self, name, path=None, target=None):
                if name == "rlprune" or name.startswith("rlprune."):
                    raise ImportError("rlprune must not be needed to load the export")
                return None

        sys.meta_path.insert(0, BlockRlprune())
        import torch

        model = LOAD
        x = torch.load("input.pt", weights_only=True)
        with torch.no_grad():
            torch.save(model(x), "output.pt")
        assert not any(m.split(".")[0] == "rlprune" for m in sys.modules), "rlprune imported"
        """
    ).replace("LOAD", load)
    path = files.program if "export" in load else files.torchscript
    warn = ["-W", "error"] if "export" in load else []
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        # no warning from loading the primary artifact (torch.jit.load warns: its own)
        [sys.executable, "-I", *warn, "-c", script, str(path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    output = torch.load(tmp_path / "output.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(output, pruned_model(x), atol=1e-5)


def rebuild(template: nn.Module, arch: dict[str, Any]) -> nn.Module:
    """Swap every layer of a freshly built model for one of the width architecture.json gives."""
    for layer in arch["layers"]:
        parent_name, _, child = layer["name"].rpartition(".")
        parent = template.get_submodule(parent_name)
        if layer["type"] == "Conv2d":
            new: nn.Module = nn.Conv2d(
                layer["in_channels"],
                layer["out_channels"],
                tuple(layer["kernel_size"]),
                tuple(layer["stride"]),
                tuple(layer["padding"]),
                tuple(layer["dilation"]),
                layer["groups"],
                layer["bias"],
            )
        elif layer["type"] == "BatchNorm2d":
            new = nn.BatchNorm2d(layer["out_channels"], eps=layer["eps"], affine=layer["affine"])
        else:
            assert layer["type"] == "Linear"
            new = nn.Linear(layer["in_channels"], layer["out_channels"], layer["bias"])
        setattr(parent, child, new)
    return template


def test_architecture_and_safe_state_dict_rebuild_the_pruned_model(
    pruned_model: nn.Module, tmp_path: Path
) -> None:
    files = export_model(pruned_model, EXAMPLE, tmp_path, onnx=False)
    arch = json.loads(files.architecture.read_text())

    assert arch["input_shape"] == [1, 8, 8]
    assert arch["output_shape"] == [10]
    layers = {layer["name"]: layer for layer in arch["layers"]}
    expected = {
        name: (m.in_channels, m.out_channels)
        for name, m in pruned_model.named_modules()
        if isinstance(m, nn.Conv2d)
    } | {"classifier": (8, 10)}
    assert {
        name: (layers[name]["in_channels"], layers[name]["out_channels"]) for name in expected
    } == expected
    assert layers["features.0"]["out_channels"] == 4  # half of width 8
    assert layers["features.1"]["type"] == "BatchNorm2d"
    assert layers["features.1"]["out_channels"] == 4

    state = torch.load(files.state_dict, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = rebuild(digits_cnn(width=8), arch)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = batch(4)
    with torch.no_grad():
        assert torch.allclose(model(x), pruned_model(x))


class BatchSizeBranch(nn.Module):
    """Eager behaviour depends on the batch size; a trace freezes the branch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x.flatten(1))
        return y if x.shape[0] == 1 else 2 * y


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_export_rejects_a_trace_that_does_not_reproduce_the_model(tmp_path: Path) -> None:
    old = tmp_path / "pruned_model.pt"
    old.write_bytes(b"previous export")
    with pytest.raises(
        ModelError,
        # the program is exported from the batch of two and fails on the batch of one
        match=r"BatchSizeBranch does not reproduce the model on a batch of shape \(1, 1, 8, 8\)",
    ):
        export_model(BatchSizeBranch(), EXAMPLE, tmp_path, onnx=False)
    assert old.read_bytes() == b"previous export"  # a bad export never replaces a file
    assert no_temp_files(tmp_path)


def test_export_needs_a_tensor_output(tmp_path: Path) -> None:
    class TupleOut(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    with pytest.raises(ModelError, match="returns a tuple"):
        export_model(TupleOut(), EXAMPLE, tmp_path, onnx=False)


def test_onnx_is_optional(
    pruned_model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "_onnx_available", lambda: False)
    files = export_model(pruned_model, EXAMPLE, tmp_path, onnx=None)
    assert files.onnx is None
    assert not (tmp_path / "pruned_model.onnx").exists()
    with pytest.raises(ConfigError, match=r"pip install 'rlprune\[onnx\]'"):
        export_model(pruned_model, EXAMPLE, tmp_path, onnx=True)


def test_onnx_failure_raises_only_when_onnx_was_requested(
    pruned_model: nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnx")

    def broken_export(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator")

    stale = tmp_path / "pruned_model.onnx"
    stale.write_bytes(b"from an earlier export")
    monkeypatch.setattr(torch.onnx, "export", broken_export)
    with pytest.raises(
        ModelError, match="ONNX export of .* failed: RuntimeError: unsupported operator"
    ):
        export_model(pruned_model, EXAMPLE, tmp_path, onnx=True)
    assert not stale.exists()  # it would not match the new TorchScript file
    stale.write_bytes(b"from an earlier export")
    with pytest.warns(UserWarning, match="skipped the ONNX file"):
        files = export_model(pruned_model, EXAMPLE, tmp_path, onnx=None)
    assert files.onnx is None
    assert not stale.exists()
    assert files.torchscript is not None and files.torchscript.is_file()
    assert no_temp_files(tmp_path)


def test_onnx_export_runs_in_onnxruntime(pruned_model: nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    files = export_model(pruned_model, EXAMPLE, tmp_path)  # onnx=None: on when installed
    assert isinstance(files, ExportedFiles)
    assert files.onnx == tmp_path / "pruned_model.onnx"
    assert files.names()["onnx"] == "pruned_model.onnx"
    session = onnxruntime.InferenceSession(str(files.onnx), providers=["CPUExecutionProvider"])
    x = batch(6)  # dynamic batch axis
    (got,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = pruned_model(x)
    assert torch.allclose(torch.from_numpy(got), want, atol=1e-4, rtol=1e-4)
    assert no_temp_files(tmp_path)


def test_load_exported_reports_missing_and_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_exported(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ModelError, match="cannot load .* as TorchScript"):
        load_exported(bad)
    bad_program = tmp_path / "bad.pt2"
    bad_program.write_bytes(b"not a zip archive")
    with pytest.raises(ModelError, match="cannot load .* with torch.export.load"):
        load_exported(bad_program)


def test_atomic_path_leaves_no_trace_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent
        tmp.write_text("first")
    assert target.read_text() == "first"

    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half-written")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_architecture_of_plain_sequential() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, groups=1), nn.BatchNorm2d(3), nn.Flatten(1), nn.Linear(108, 5)
    )
    arch = architecture(model, EXAMPLE)
    assert [
        (layer["name"], layer["in_channels"], layer["out_channels"]) for layer in arch["layers"]
    ] == [
        ("0", 1, 3),
        ("1", 3, 3),
        ("3", 108, 5),
    ]
    assert arch["output_shape"] is None
    json.dumps(arch)  # plain JSON types only


@pytest.mark.parametrize(
    ("spec", "kwargs"),
    [("resnet", {"depth": 8, "width": 4}), ("mobilenetv2", {"width_mult": 0.25})],
)
def test_export_residual_and_depthwise_zoo_models(spec: str, kwargs: dict, tmp_path: Path) -> None:
    model = build_model(spec, in_channels=1, num_classes=10, input_size=8, kwargs=kwargs).eval()
    files = export_model(model, EXAMPLE, tmp_path, onnx=False)
    x = batch(3)
    assert files.torchscript is not None
    with torch.no_grad():
        assert torch.allclose(load_exported(files.torchscript)(x), model(x), atol=1e-5)
        assert torch.allclose(load_exported(files.program)(x), model(x), atol=1e-5)
