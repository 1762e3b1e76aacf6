"""torchvision's classification CNNs and ViTs with random weights, for sweeps and profiling.

torchvision's PyPI wheel is built against a CUDA torch and its compiled ops do not load
beside a CPU torch; only its model definitions (plain Python) are needed here, so
:func:`torchvision_models` imports them without torchvision's ``__init__`` when the normal
import fails. ``tools/check_architectures.py`` and ``tools/profile_env.py --arch`` build
their networks with :func:`build_classifier`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import torch
from torch import nn

from ..errors import ModelError
from .specs import build_model

__all__ = ["build_classifier", "torchvision_models"]


def torchvision_models() -> types.ModuleType:
    """``torchvision.models``, imported without torchvision's compiled ops if need be.

    Raises:
        ModelError: torchvision is not installed.
    """
    try:
        return importlib.import_module("torchvision.models")
    except Exception:  # the CUDA-built wheel's ops do not load: skip torchvision/__init__
        for name in [n for n in sys.modules if n.startswith("torchvision")]:
            del sys.modules[name]
        spec = importlib.util.find_spec("torchvision")
        if spec is None or spec.submodule_search_locations is None:
            raise ModelError(
                "torchvision is not installed; pip install torchvision "
                "(only its model definitions are used)"
            ) from None
        package = types.ModuleType("torchvision")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["torchvision"] = package
        return importlib.import_module("torchvision.models")


def build_classifier(
    name: str, size: int = 224, models: types.ModuleType | None = None
) -> nn.Module:
    """``name`` with random weights (seed 0) and 10 classes, without auxiliary heads, in
    eval mode: a model spec (``file.py:factory``, ``pkg.module:factory``, for ``size`` x
    ``size`` RGB images) or a torchvision model name (from ``models``, by default
    :func:`torchvision_models`)."""
    if ":" in name:
        torch.manual_seed(0)
        spec_model: nn.Module = build_model(name, in_channels=3, num_classes=10, input_size=size)
        return spec_model.eval()
    models = models or torchvision_models()
    kwargs: dict[str, object] = {"num_classes": 10, "weights": None}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    if name.startswith("vit_"):  # its position embedding is built for one image size
        kwargs["image_size"] = size
    torch.manual_seed(0)
    model: nn.Module = models.get_model(name, **kwargs)
    return model.eval()
