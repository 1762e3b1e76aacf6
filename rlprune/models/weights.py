"""Weight files: state dicts saved and loaded safely (``weights_only=True``, JSON metadata)."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError, one_line, preview
from ..files import atomic_path

__all__ = ["load_weights", "save_weights"]


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
            f"cannot read weights file {str(path)!r}: {one_line(exc)}; it must be a state "
            "dict saved with torch.save (tensors and plain types only)"
        ) from exc

    state = payload.get("state_dict", payload) if isinstance(payload, Mapping) else payload
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelError(
            f"weights file {str(path)!r} holds a {type(state).__name__}, not a state dict of "
            "tensors; save it with rlprune.models.weights.save_weights or torch.save(model.state_dict())"
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
        problems.append(f"{len(missing)} missing key(s) {preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) {preview(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es) {preview(mismatched)}")
    if problems:
        raise ModelError(
            f"weights file {str(path)!r} does not fit the {type(model).__name__} model: "
            f"{'; '.join(problems)}; load weights saved from the same model spec and arguments"
        )
    # modules that version their state (torchvision's MNASNet) read ``_metadata``, which a
    # weights_only load drops; the keys and shapes fit, so the model's own versions hold
    fitted = OrderedDict(state)
    fitted._metadata = getattr(state, "_metadata", None) or getattr(expected, "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(fitted, strict=True)


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
