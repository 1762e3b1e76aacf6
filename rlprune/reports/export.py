"""Export a pruned model so that it runs without rlprune.

:func:`export_model` writes into one folder:

| file | what | load it with |
| --- | --- | --- |
| ``pruned_model.pt2`` | ``torch.export`` program (eval mode, dynamic batch size) | ``torch.export.load(path).module()`` or :func:`load_exported` |
| ``pruned_model.pt`` | TorchScript (traced in eval mode), while torch ships ``torch.jit`` | ``torch.jit.load(path)`` or :func:`load_exported` |
| ``pruned_state_dict.pt`` | plain state dict of CPU tensors | ``torch.load(path, weights_only=True)`` |
| ``architecture.json`` | every conv / linear / BatchNorm layer and its channel counts, every attention's heads | ``json.load`` |
| ``pruned_model.onnx`` | ONNX (opset 17, dynamic batch axis), with the ``onnx`` extra | ``onnxruntime.InferenceSession(path)`` |

A pruned network has the same module tree as the original but narrower layers, so
the state dict alone does not rebuild it: ``architecture.json`` gives each layer's
width, and the ``.pt2`` and TorchScript files need neither the model's Python class nor
rlprune.

``torch.export`` is where PyTorch is going (PyTorch 2.9+ marks ``torch.jit`` deprecated),
so its ``.pt2`` file is the primary artifact. It is exported from a batch of two with the
batch dimension marked dynamic (a batch of one would be specialised to the constant 1)
and checked on both batch sizes. TorchScript is written too while torch still has
``torch.jit.trace``, since its files load on older PyTorch versions; the deprecation
warnings torch raises for those calls, and only those, are silenced here.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from ..errors import ConfigError, ModelError, one_line
from ..files import atomic_path, atomic_write_bytes

__all__ = [
    "ARCHITECTURE_FILE",
    "ARCHITECTURE_FORMAT",
    "ONNX_FILE",
    "ONNX_OPSET",
    "PROGRAM_FILE",
    "STATE_DICT_FILE",
    "TORCHSCRIPT_FILE",
    "ExportedFiles",
    "architecture",
    "export_model",
    "load_exported",
    "torchscript_available",
]

PROGRAM_FILE = "pruned_model.pt2"
TORCHSCRIPT_FILE = "pruned_model.pt"
STATE_DICT_FILE = "pruned_state_dict.pt"
ARCHITECTURE_FILE = "architecture.json"
ONNX_FILE = "pruned_model.onnx"
ARCHITECTURE_FORMAT = "rlprune-architecture/1"
ONNX_OPSET = 17
"""Supported by onnxruntime >= 1.14 and by every PyTorch this package allows."""

TORCHSCRIPT_ATOL = 1e-5
"""Largest output difference of the ``.pt2`` and TorchScript files from the eager model."""
# ONNX Runtime picks its own convolution kernels, so its float32 sums differ in the
# last bits from PyTorch's; 1e-4 still catches any real export error.
ONNX_TOL = 1e-4


@dataclass(frozen=True)
class ExportedFiles:
    """Paths written by :func:`export_model`."""

    program: Path
    """The ``torch.export`` program (``.pt2``)."""
    torchscript: Path | None
    """The TorchScript file; ``None`` when not written (no ``torch.jit.trace`` in this torch)."""
    state_dict: Path
    architecture: Path
    onnx: Path | None

    def names(self) -> dict[str, str]:
        """``{kind: file name}`` for the files that exist (as the apply report lists them)."""
        files = {
            "program": self.program,
            "torchscript": self.torchscript,
            "state_dict": self.state_dict,
            "architecture": self.architecture,
            "onnx": self.onnx,
        }
        return {kind: path.name for kind, path in files.items() if path is not None}


def export_model(
    model: nn.Module,
    example_inputs: torch.Tensor,
    out_dir: str | os.PathLike[str],
    *,
    onnx: bool | None = None,
    torchscript: bool | None = None,
) -> ExportedFiles:
    """Write the ``torch.export``, TorchScript, state-dict, architecture and (optionally)
    ONNX files.

    The model is exported in eval mode (its train/eval mode is restored afterwards):
    ``example_inputs`` is a batch with the model's input shape. Each saved program is
    loaded back and checked against the eager model, on ``example_inputs`` and on a
    random batch of two, before it replaces any earlier file. Every file is written to a
    temporary name and moved into place, so a crash never leaves a half-written file.

    Args:
        model: the (pruned) network; it must return one tensor.
        example_inputs: e.g. :attr:`rlprune.evaluation.task.PruningTask.example_inputs`.
        out_dir: created if missing.
        onnx: ``True`` writes ``pruned_model.onnx`` (needs the ``onnx`` extra),
            ``False`` skips it, ``None`` writes it when the ``onnx`` package is importable
            (and only warns if the ONNX export fails). When ``onnxruntime`` is importable
            too, the ONNX file is run and checked. When no ONNX file is written, one left
            in ``out_dir`` by an earlier export is deleted, as it would not match.
        torchscript: ``True`` writes ``pruned_model.pt``, ``False`` skips it, ``None``
            writes it while this torch has ``torch.jit.trace`` (:func:`torchscript_available`).
            When it is not written, one left by an earlier export is deleted.

    Raises:
        ConfigError: ``onnx=True`` without the ``onnx`` package, or ``torchscript=True``
            on a torch without ``torch.jit.trace``.
        ModelError: ``torch.export`` or tracing fails, ONNX export fails with
            ``onnx=True``, or an exported model's outputs differ from the eager model's.
    """
    want_onnx = _onnx_available() if onnx is None else onnx
    if want_onnx and not _onnx_available():
        raise ConfigError(
            "onnx=True but the onnx package is not installed; "
            "run `pip install 'rlprune[onnx]'` or pass onnx=False"
        )
    want_torchscript = torchscript_available() if torchscript is None else torchscript
    if want_torchscript and not torchscript_available():
        raise ConfigError(
            f"torchscript=True but torch {torch.__version__} has no torch.jit.trace; "
            f"pass torchscript=False and load the {PROGRAM_FILE} file with torch.export.load"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    example = example_inputs.to(device)
    checks = _check_inputs(model, example)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = [_forward(model, x) for x in checks]
        program = out / PROGRAM_FILE
        _export_program(model, checks, expected, program)
        script: Path | None = out / TORCHSCRIPT_FILE
        assert script is not None
        if want_torchscript:
            _export_torchscript(model, example, checks, expected, script)
        else:
            script.unlink(missing_ok=True)  # an earlier export's would not match
            script = None

        state_dict = out / STATE_DICT_FILE
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        # serialised in memory first: a full disk then fails in Python (OSError), not
        # inside torch's C++ writer (which aborts the process)
        atomic_write_bytes(state_dict, _serialise(lambda f: torch.save(state, f)))

        arch = out / ARCHITECTURE_FILE
        text = json.dumps(architecture(model, example, expected[0]), indent=2) + "\n"
        with atomic_path(arch) as tmp:
            tmp.write_text(text, encoding="utf-8")

        onnx_path = _write_onnx(model, example, checks, expected, out / ONNX_FILE, onnx, want_onnx)
    finally:
        model.train(was_training)
    return ExportedFiles(
        program=program,
        torchscript=script,
        state_dict=state_dict,
        architecture=arch,
        onnx=onnx_path,
    )


def torchscript_available() -> bool:
    """Whether this torch still ships ``torch.jit.trace`` (TorchScript is deprecated)."""
    jit = getattr(torch, "jit", None)
    return callable(getattr(jit, "trace", None)) and callable(getattr(jit, "load", None))


def load_exported(path: str | os.PathLike[str]) -> nn.Module:
    """Load an exported ``pruned_model.pt2`` (or TorchScript ``pruned_model.pt``) on the CPU.

    This is all a user needs to run a pruned model; it is the same as
    ``torch.export.load(path).module()`` (or ``torch.jit.load(path, map_location="cpu")``
    in eval mode), which works without rlprune installed.

    Raises:
        ModelError: the file is missing or is not an exported program or TorchScript archive.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"exported model {str(path)!r} not found; check the path")
    if path.suffix == ".pt2":
        try:
            return _program_load(path)
        except Exception as exc:
            raise ModelError(
                f"cannot load {str(path)!r} with torch.export.load: {one_line(exc)}; "
                f"pass the {PROGRAM_FILE} written by export_model"
            ) from exc
    try:
        module = _jit_load(path)
    except Exception as exc:
        raise ModelError(
            f"cannot load {str(path)!r} as TorchScript: {one_line(exc)}; "
            f"pass the {PROGRAM_FILE} or {TORCHSCRIPT_FILE} written by export_model"
        ) from exc
    return module.eval()


def architecture(
    model: nn.Module, example_inputs: torch.Tensor, output: torch.Tensor | None = None
) -> dict[str, Any]:
    """Every conv, linear and BatchNorm layer by qualified name, with its channel counts,
    and every attention with its heads.

    Enough to rebuild the pruned network from its original definition: construct it,
    replace each listed layer with one of the listed width, then load the state dict.
    """
    layers: list[dict[str, Any]] = []
    for name, module in model.named_modules():
        if isinstance(module, _ConvNd):
            layers.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "in_channels": module.in_channels,
                    "out_channels": module.out_channels,
                    "kernel_size": list(module.kernel_size),
                    "stride": list(module.stride),
                    "padding": module.padding
                    if isinstance(module.padding, str)
                    else list(module.padding),
                    "dilation": list(module.dilation),
                    "groups": module.groups,
                    "bias": module.bias is not None,
                }
            )
        elif isinstance(module, nn.Linear):
            layers.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "in_channels": module.in_features,
                    "out_channels": module.out_features,
                    "bias": module.bias is not None,
                }
            )
        elif isinstance(getattr(module, "num_heads", None), int) and isinstance(
            getattr(module, "head_dim", None), int
        ):  # an attention: its heads left (rlprune's HeadAttention, nn.MultiheadAttention)
            layers.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "num_heads": module.num_heads,
                    "head_dim": module.head_dim,
                }
            )
        elif isinstance(module, _BatchNorm):
            layers.append(
                {
                    "name": name,
                    "type": type(module).__name__,
                    "in_channels": module.num_features,
                    "out_channels": module.num_features,
                    "eps": module.eps,
                    "affine": module.affine,
                }
            )
    return {
        "format": ARCHITECTURE_FORMAT,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "input_shape": list(example_inputs.shape[1:]),
        "output_shape": None if output is None else list(output.shape[1:]),
        "torch_version": torch.__version__,
        "layers": layers,
    }


# ------------------------------------------------------------------------ helpers


def _onnx_available() -> bool:
    return importlib.util.find_spec("onnx") is not None


def _check_inputs(model: nn.Module, example: torch.Tensor) -> list[torch.Tensor]:
    """The example batch, plus a random batch of two when the model accepts one.

    Tracing records shapes; a batch of two catches a forward that hard-codes the
    example's batch size of one.
    """
    generator = torch.Generator().manual_seed(0)
    shape = (2, *example.shape[1:])
    batch = torch.randn(shape, generator=generator, dtype=example.dtype).to(example.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(batch)
    except Exception:
        return [example]
    finally:
        model.train(was_training)
    return [example, batch]


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    output = model(x)
    if not isinstance(output, torch.Tensor):
        raise ModelError(
            f"{type(model).__name__} returns a {type(output).__name__}; export needs a model "
            "that returns one tensor of logits"
        )
    return output


def _export_program(
    model: nn.Module,
    checks: list[torch.Tensor],
    expected: list[torch.Tensor],
    path: Path,
) -> None:
    """``torch.export`` the model on the CPU, save it, load it back and check it."""
    from torch.export import Dim, export, save

    parameter = next(iter(model.parameters()), None)
    on_cpu = parameter is None or parameter.device.type == "cpu"
    cpu_model = model if on_cpu else copy.deepcopy(model).cpu()
    # a batch of one would be specialised to the constant 1: export from the batch of two
    sample = checks[-1].cpu()
    dynamic = {0: Dim("batch", min=1)} if len(checks) > 1 else None
    try:
        with torch.no_grad():
            program = export(cpu_model, (sample,), dynamic_shapes=(dynamic,))
    except Exception as exc:
        raise ModelError(
            f"cannot export {type(model).__name__} with torch.export: {one_line(exc)}; "
            "the forward pass must be exportable (no data-dependent control flow)"
        ) from exc
    with atomic_path(path) as tmp:
        data = _serialise(lambda f: save(program, f))
        tmp.write_bytes(data)
        # loaded from the bytes: torch.export.load wants a name ending in .pt2, not .tmp
        _check_outputs(_program_load(io.BytesIO(data)), "torch.export", model, checks, expected)


def _check_outputs(
    loaded: Callable[[torch.Tensor], Any],
    kind: str,
    model: nn.Module,
    checks: list[torch.Tensor],
    expected: list[torch.Tensor],
) -> None:
    """Raise unless ``loaded`` reproduces the eager outputs on every check batch."""
    with torch.no_grad():
        for x, want in zip(checks, expected, strict=True):
            got = loaded(x.cpu())
            if not (
                isinstance(got, torch.Tensor)
                and got.shape == want.shape
                and torch.allclose(got, want.cpu(), atol=TORCHSCRIPT_ATOL)
            ):
                raise ModelError(
                    f"{kind} export of {type(model).__name__} does not reproduce the "
                    f"model on a batch of shape {tuple(x.shape)} "
                    f"({_difference(got, want)}); the forward pass probably has "
                    "data-dependent control flow or a fixed batch size"
                )


def _export_torchscript(
    model: nn.Module,
    example: torch.Tensor,
    checks: list[torch.Tensor],
    expected: list[torch.Tensor],
    path: Path,
) -> None:
    try:
        with _quiet_jit():
            # check_trace=False: the saved file is checked below, on more than one batch size.
            traced = torch.jit.trace(model, example, check_trace=False)
    except Exception as exc:
        raise ModelError(
            f"cannot trace {type(model).__name__} to TorchScript: {one_line(exc)}; "
            "the forward pass must be traceable with torch.jit.trace"
        ) from exc
    with atomic_path(path) as tmp:
        with _quiet_jit():
            tmp.write_bytes(_serialise(lambda f: torch.jit.save(traced, f)))
        _check_outputs(_jit_load(tmp), "TorchScript", model, checks, expected)


def _write_onnx(
    model: nn.Module,
    example: torch.Tensor,
    checks: list[torch.Tensor],
    expected: list[torch.Tensor],
    path: Path,
    requested: bool | None,
    wanted: bool,
) -> Path | None:
    """Export ONNX if wanted; a failure raises when it was requested, else warns."""
    try:
        if wanted:
            _export_onnx(model, example, checks, expected, path)
            return path
    except ModelError as exc:
        if requested:
            path.unlink(missing_ok=True)
            raise
        warnings.warn(f"skipped the ONNX file: {exc}", stacklevel=3)
    # An ONNX file left by an earlier export would not match the new model.
    path.unlink(missing_ok=True)
    return None


def _export_onnx(
    model: nn.Module,
    example: torch.Tensor,
    checks: list[torch.Tensor],
    expected: list[torch.Tensor],
    path: Path,
) -> None:
    import onnx

    kwargs: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["logits"],
        "opset_version": ONNX_OPSET,
        "dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}},
    }
    # The TorchScript-based exporter: the newer torch.export-based default needs the
    # extra onnxscript package and specialises a batch of one (see the module docstring).
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    with atomic_path(path) as tmp:
        try:
            # this exporter traces with torch.jit: its deprecation warnings are ours too
            with warnings.catch_warnings(), _quiet_jit():
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                data = _serialise(
                    lambda f: torch.onnx.export(model, (example,), f, **kwargs)  # type: ignore[arg-type]
                )
            onnx.checker.check_model(onnx.load_from_string(data))
        except Exception as exc:
            raise ModelError(
                f"ONNX export of {type(model).__name__} failed: {one_line(exc)}; "
                "pass onnx=False to export TorchScript only"
            ) from exc
        tmp.write_bytes(data)  # an OSError (full disk) propagates as itself
        _check_onnx_outputs(tmp, checks, expected)


def _check_onnx_outputs(
    path: Path, checks: list[torch.Tensor], expected: list[torch.Tensor]
) -> None:
    """Run the ONNX file in onnxruntime when it is installed and compare the outputs."""
    if importlib.util.find_spec("onnxruntime") is None:
        return
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x, want in zip(checks, expected, strict=True):
        (got,) = session.run(None, {"input": x.detach().cpu().numpy()})
        want_np = want.detach().cpu().numpy()
        if got.shape != want_np.shape or not np.allclose(
            got, want_np, atol=ONNX_TOL, rtol=ONNX_TOL
        ):
            raise ModelError(
                f"ONNX export does not reproduce the model on a batch of shape "
                f"{tuple(x.shape)} ({_difference(torch.from_numpy(got), want)}); "
                "pass onnx=False to export TorchScript only"
            )


_JIT_DEPRECATION = r".*(torch\.jit|TorchScript).*(deprecated|not supported|switch to)"
"""The message of a warning torch raises because TorchScript is deprecated (2.9+);
``warnings`` matches it from the start, ignoring case."""


@contextmanager
def _quiet_jit() -> Iterator[None]:
    """Silence torch's deprecation warnings for our own torch.jit calls, whatever their
    category (DeprecationWarning today, FutureWarning in some releases), and no others."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_JIT_DEPRECATION)
        yield


def _serialise(write: Callable[[io.BytesIO], object]) -> bytes:
    """The bytes ``write`` puts into an in-memory file."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def _program_load(source: Path | io.BytesIO) -> nn.Module:
    """The module of a saved ``torch.export`` program (a ``.pt2`` file or its bytes)."""
    module: nn.Module = torch.export.load(
        str(source) if isinstance(source, Path) else source
    ).module()
    return module


def _jit_load(path: Path) -> torch.jit.ScriptModule:
    with _quiet_jit():
        module: torch.jit.ScriptModule = torch.jit.load(str(path), map_location="cpu")
    return module


def _difference(got: object, want: torch.Tensor) -> str:
    if not isinstance(got, torch.Tensor):
        return f"got a {type(got).__name__}"
    if got.shape != want.shape:
        return f"output shape {tuple(got.shape)} vs {tuple(want.shape)}"
    return f"max abs difference {float((got - want.cpu()).abs().max()):.3g}"
