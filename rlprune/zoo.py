"""Model zoo, model-spec resolution and safe weight files.

A *model spec* is one string:

- a registry name from :data:`MODELS` (``"digits-cnn"``, ``"resnet20"``, ...);
- ``"package.module:factory"``: a callable imported with :mod:`importlib`;
- ``"path/to/file.py:factory"``: a callable loaded from a Python file (relative to the
  current directory, or absolute).

Every factory is called with the keyword arguments it accepts among ``in_channels``,
``num_classes`` and ``input_size`` (height = width), plus any extra keyword arguments.

The zoo's models put a BatchNorm after every convolution, use activation *modules*
(``nn.ReLU`` / ``nn.ReLU6``, never the functional form, so pruning and tracing see them)
and end with an ``nn.Linear`` named ``classifier``, the last module executed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rlprune.errors import ModelError
from rlprune.files import atomic_path

__all__ = [
    "MOBILENETV2_SMALL_CFG",
    "MODELS",
    "BasicBlock",
    "ConvClassifier",
    "InvertedResidual",
    "ResNet",
    "build_model",
    "check_model_fits",
    "digits_cnn",
    "load_weights",
    "mobilenetv2",
    "resnet",
    "resnet20",
    "resolve_factory",
    "save_weights",
    "vgg",
]

# (expansion t, output channels c, repeats n, first stride s), as in the MobileNetV2 paper,
# shortened for 28x28 inputs: three stride-2 stages take 28 -> 14 -> 7 -> 4. The first
# block already downsamples because a 6x expansion at full 28x28 resolution costs ~8x the
# CPU time of the whole rest of the net (the tests and the RL loop run on 2 CPU cores).
MOBILENETV2_SMALL_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 2),
    (6, 24, 2, 2),
    (6, 32, 2, 2),
    (6, 64, 2, 1),
    (6, 96, 1, 1),
)


# ------------------------------------------------------------------------- models


def _conv_bn_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class ConvClassifier(nn.Module):
    """A convolutional body, global average pooling, then the ``classifier`` Linear."""

    def __init__(
        self, features: nn.Module, feature_channels: int, num_classes: int, hidden: int = 0
    ) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head: nn.Module = (
            nn.Sequential(nn.Linear(feature_channels, hidden), nn.ReLU(inplace=True))
            if hidden > 0
            else nn.Identity()
        )
        self.classifier = nn.Linear(hidden if hidden > 0 else feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.flatten(self.pool(self.features(x)))))


def digits_cnn(
    in_channels: int = 1, num_classes: int = 10, input_size: int = 8, width: int = 32
) -> nn.Module:
    """A small plain CNN for 8x8 digits: three conv-BN-ReLU layers, one 2x2 max-pool.

    ``conv(c->w) conv(w->2w) maxpool conv(2w->2w) avgpool linear``. Works for any
    ``input_size`` >= 2 (``input_size`` is accepted for a uniform factory signature).
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes, width=width)
    features = nn.Sequential(
        *_conv_bn_relu(in_channels, width),
        *_conv_bn_relu(width, 2 * width),
        nn.MaxPool2d(2),
        *_conv_bn_relu(2 * width, 2 * width),
    )
    return ConvClassifier(features, 2 * width, num_classes)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, a 1x1 conv-BN shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet (He et al. 2016): stem, three stages of BasicBlocks, linear."""

    def __init__(self, in_channels: int, num_classes: int, depth: int, width: int) -> None:
        super().__init__()
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, width))
        stages: list[nn.Module] = []
        channels = width
        for stage, stage_width in enumerate((width, 2 * width, 4 * width)):
            blocks: list[nn.Module] = []
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(BasicBlock(channels, stage_width, stride))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.classifier(self.flatten(self.pool(x)))


def resnet(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    depth: int = 20,
    width: int = 16,
) -> nn.Module:
    """CIFAR-style ResNet of ``depth = 6n + 2`` layers and stage widths ``w, 2w, 4w``.

    Downsampling blocks (stride 2) use a 1x1 conv + BN shortcut (option B).

    Raises:
        ModelError: ``depth`` is not of the form 6n + 2.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes, width=width)
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ModelError(
            f"resnet depth={depth} is invalid; use 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56)"
        )
    return ResNet(in_channels, num_classes, depth, width)


resnet20 = partial(resnet, depth=20)


def vgg(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 32,
    cfg: Sequence[int | str] = (32, 32, "M", 64, 64, "M", 128, 128, "M"),
    hidden: int = 0,
) -> nn.Module:
    """VGG-style plain net: conv-BN-ReLU layers (ints in ``cfg``) and 2x2 max-pools (``"M"``).

    Max-pools that would shrink the feature map below 1x1 are skipped, so one ``cfg``
    serves 8x8 and 28x28 inputs. ``hidden > 0`` adds a Linear-ReLU before the classifier.

    Raises:
        ModelError: ``cfg`` holds something other than positive ints and ``"M"``.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    layers: list[nn.Module] = []
    channels, size = in_channels, int(input_size)
    for item in cfg:
        if item == "M":
            if size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
        elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
            layers += _conv_bn_relu(channels, item)
            channels = item
        else:
            raise ModelError(
                f"vgg cfg entry {item!r} is invalid; use positive ints (conv widths) and 'M'"
            )
    if not any(isinstance(m, nn.Conv2d) for m in layers):
        raise ModelError(f"vgg cfg {tuple(cfg)!r} has no conv layer; add at least one width")
    return ConvClassifier(nn.Sequential(*layers), channels, num_classes, hidden=hidden)


def _make_divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 linear projection (+ residual)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers += [
                nn.Conv2d(in_channels, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


def mobilenetv2(
    in_channels: int = 3,
    num_classes: int = 10,
    input_size: int = 28,
    width_mult: float = 1.0,
    cfg: Sequence[tuple[int, int, int, int]] = MOBILENETV2_SMALL_CFG,
    stem_channels: int = 16,
    last_channels: int = 256,
) -> nn.Module:
    """A small MobileNetV2 (Sandler et al. 2018) for 28x28-class inputs.

    ``cfg`` rows are ``(expansion, out_channels, repeats, first_stride)``; channel counts
    are scaled by ``width_mult`` and rounded to multiples of 8. Stem conv (stride 1),
    inverted-residual blocks, a final 1x1 conv-BN-ReLU6, average pool, linear.
    """
    _check_positive(in_channels=in_channels, num_classes=num_classes)
    if width_mult <= 0:
        raise ModelError(f"mobilenetv2 width_mult={width_mult} is invalid; use a value > 0")
    channels = _make_divisible(stem_channels * width_mult)
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, channels, 3, 1, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU6(inplace=True),
    ]
    for expansion, out, repeats, stride in cfg:
        out_channels = _make_divisible(out * width_mult)
        for i in range(repeats):
            layers.append(
                InvertedResidual(channels, out_channels, stride if i == 0 else 1, expansion)
            )
            channels = out_channels
    last = _make_divisible(last_channels * max(1.0, width_mult))
    layers += [
        nn.Conv2d(channels, last, 1, bias=False),
        nn.BatchNorm2d(last),
        nn.ReLU6(inplace=True),
    ]
    return ConvClassifier(nn.Sequential(*layers), last, num_classes)


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ModelError(f"{name}={value!r} is invalid; use a positive int")


#: Built-in model factories by spec name.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits-cnn": digits_cnn,
    "resnet20": resnet20,
    "resnet": resnet,
    "vgg": vgg,
    "mobilenetv2": mobilenetv2,
}


# ------------------------------------------------------------------- model specs


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Return the model factory a spec names: a registry name, ``module:attr`` or ``file.py:attr``.

    Raises:
        ModelError: unknown name, missing file, import failure, missing attribute, or an
            attribute that is not callable.
    """
    spec = str(spec).strip()
    if spec in MODELS:
        return MODELS[spec]
    if ":" not in spec:
        raise ModelError(
            f"unknown model {spec!r}; use one of {sorted(MODELS)}, 'package.module:factory' "
            "or 'path/to/file.py:factory'"
        )
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelError(
            f"model spec {spec!r} is incomplete; write 'package.module:factory' or "
            "'path/to/file.py:factory'"
        )
    if target.endswith(".py") or "/" in target or os.sep in target:
        module = _import_file(target, spec)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # any import-time failure is the user's module's
            raise ModelError(
                f"cannot import module {target!r} for model spec {spec!r}: {_one_line(exc)}; "
                "check the module name and that it imports cleanly"
            ) from exc

    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise ModelError(
            f"{target!r} has no attribute {attr!r} (model spec {spec!r}); "
            f"names it defines: {_preview(public)}"
        )
    factory = getattr(module, attr)
    if not callable(factory):
        raise ModelError(
            f"{target}:{attr} is a {type(factory).__name__}, not callable; point the spec at "
            "a function or class that returns an nn.Module"
        )
    return factory  # type: ignore[no-any-return]


def _import_file(target: str, spec: str) -> Any:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise ModelError(
            f"model file {str(path)!r} not found (model spec {spec!r}); give a path relative to "
            f"{str(Path.cwd())!r} or an absolute path"
        )
    path = path.resolve()
    # A unique, stable module name per file keeps two user files named model.py apart.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"rlprune_user_model_{path.stem}_{digest}"
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    if import_spec is None or import_spec.loader is None:
        raise ModelError(f"cannot load {str(path)!r} as a Python module; give a .py file")
    module = importlib.util.module_from_spec(import_spec)
    # Registered before execution so dataclasses, pickling and self-imports see the module.
    sys.modules[module_name] = module
    try:
        import_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelError(
            f"cannot import model file {str(path)!r}: {_one_line(exc)}; fix the error in that file"
        ) from exc
    return module


def build_model(
    spec: str,
    *,
    in_channels: int,
    num_classes: int,
    input_size: int,
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build the model a spec names for the given input channels, classes and input size.

    The factory receives those of ``in_channels``, ``num_classes`` and ``input_size`` that
    its signature accepts (all of them if it takes ``**kwargs``), plus every entry of
    ``kwargs``.

    Raises:
        ModelError: the spec cannot be resolved, ``kwargs`` names a parameter the factory
            does not take, the factory fails, or it returns something other than an
            ``nn.Module``.
    """
    factory = resolve_factory(spec)
    base = {"in_channels": in_channels, "num_classes": num_classes, "input_size": input_size}
    extra = dict(kwargs or {})
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C extensions have none
        signature = None

    if signature is None:
        call_kwargs = {**base, **extra}
    else:
        params = signature.parameters
        takes_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepted = {
            name
            for name, p in params.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        unknown = sorted(set(extra) - accepted) if not takes_var_kw else []
        if unknown:
            raise ModelError(
                f"model {spec!r} takes no argument(s) {unknown}; its keyword arguments are "
                f"{sorted(accepted)}"
            )
        call_kwargs = {k: v for k, v in base.items() if takes_var_kw or k in accepted}
        call_kwargs.update(extra)

    try:
        model = factory(**call_kwargs)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"model {spec!r} failed to build with {call_kwargs}: {_one_line(exc)}; "
            "check the model arguments"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make the factory return the model"
        )
    return model


# ------------------------------------------------------------------------ weights


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a weight file into ``model`` in place (``torch.load(..., weights_only=True)``).

    The file holds a plain state dict, or a dict with a ``"state_dict"`` entry (as written
    by :func:`save_weights`). Keys and shapes must match the model exactly.

    Raises:
        ModelError: missing or unreadable file, or a state dict that does not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {str(path)!r} not found; check the path")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(
            f"cannot read weights file {str(path)!r}: {_one_line(exc)}; it must be a state "
            "dict saved with torch.save (tensors and plain types only)"
        ) from exc

    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelError(
            f"weights file {str(path)!r} holds a {type(state).__name__}, not a state dict of "
            "tensors; save it with rlprune.zoo.save_weights or torch.save(model.state_dict())"
        )

    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) {_preview(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) {_preview(mismatched)}")
    if problems:
        raise ModelError(
            f"weights file {str(path)!r} does not fit the {type(model).__name__} model: "
            f"{'; '.join(problems)}; load weights saved from the same model spec and arguments"
        )
    model.load_state_dict(state, strict=True)


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Save ``{"state_dict": ..., "metadata": {...}}`` atomically, creating parent folders.

    ``metadata`` must be JSON-serialisable (it is stored as plain dicts, lists, strings
    and numbers, so :func:`load_weights` never needs to unpickle arbitrary objects).

    Raises:
        TypeError: ``metadata`` is not JSON-serialisable.
    """
    try:
        plain_metadata = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"metadata must be JSON-serialisable (str, int, float, bool, None, list, dict): {exc}"
        ) from exc
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "metadata": plain_metadata}, tmp)


def check_model_fits(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Check that ``model`` maps a batch of ``input_shape`` images to ``num_classes`` logits.

    Runs one forward pass on a zero batch of 2 in eval mode without gradients; the
    model's train/eval mode is restored afterwards.

    Raises:
        ModelError: the forward pass fails, or the output is not ``(2, num_classes)``.
    """
    shape = tuple(int(d) for d in input_shape)
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = (
        parameter.dtype
        if parameter is not None and parameter.is_floating_point()
        else torch.float32
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros((2, *shape), device=device, dtype=dtype))
    except Exception as exc:
        raise ModelError(
            f"model fails on input shape {shape}: {_one_line(exc)}; make the model's input "
            "channels and size match the dataset"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise ModelError(
            f"model returns a {type(output).__name__} for input shape {shape}; it must return "
            "a tensor of logits (batch, num_classes)"
        )
    if tuple(output.shape) != (2, num_classes):
        raise ModelError(
            f"model output shape {tuple(output.shape)} for a batch of 2 inputs {shape}, "
            f"expected (2, {num_classes}); make the classifier output num_classes={num_classes}"
        )


# ------------------------------------------------------------------------ helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _preview(items: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    more = f", ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"
