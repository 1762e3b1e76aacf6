"""Model specs: one string names the model to build.

A *model spec* is

- a registry name from :data:`rlprune.models.zoo.MODELS` (``"digits-cnn"``, ``"resnet20"``, ...);
- ``"package.module:factory"``: a callable imported with :mod:`importlib`;
- ``"path/to/file.py:factory"``: a callable loaded from a Python file (relative to the
  current directory, or absolute).

Every factory is called with the keyword arguments it accepts among ``in_channels``,
``num_classes`` and ``input_size`` (height = width), plus any extra keyword arguments.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import ModelError, one_line, preview
from .zoo import MODELS

__all__ = ["build_model", "check_recorded_spec", "resolve_factory", "spec_fingerprint"]


def _source_file(spec: str) -> Path | None:
    """The Python file a spec's code lives in, found without importing anything;
    ``None`` for zoo names and for files or modules that cannot be found."""
    spec = str(spec).strip()
    if spec in MODELS or ":" not in spec:
        return None
    target = spec.rpartition(":")[0]
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target).expanduser()
        path = path if path.is_absolute() else Path.cwd() / path
        return path.resolve() if path.is_file() else None
    search: list[str] | None = None
    found = None
    for part in target.split("."):  # walk the dotted name with finders only: no execution
        found = importlib.machinery.PathFinder.find_spec(part, search)
        if found is None:
            return None
        search = list(found.submodule_search_locations or [])
    origin = found.origin if found is not None else None
    return Path(origin) if origin and Path(origin).is_file() else None


def spec_fingerprint(spec: str) -> str | None:
    """sha256 of the file holding a spec's code (``None`` for zoo models, whose code is
    rlprune's own): recorded in run folders so that a resume runs only that code."""
    source = _source_file(spec)
    return hashlib.sha256(source.read_bytes()).hexdigest() if source is not None else None


def check_recorded_spec(spec: str, recorded: str | None, where: str) -> None:
    """Refuse to import model code named in a file rlprune wrote (a run folder) unless it
    is the same file as at train time (``recorded``: its :func:`spec_fingerprint`).

    Raises:
        ModelError: the code is not a zoo model and its file is missing, changed, or was
            never recorded; the message says to pass ``--model`` to trust it.
    """
    if str(spec).strip() in MODELS:
        return
    current = spec_fingerprint(spec)
    if current is not None and current == recorded:
        return
    reason = (
        "whose file is missing"
        if current is None
        else "whose file changed since training"
        if recorded
        else "with no recorded checksum"
    )
    raise ModelError(
        f"{where} names model code {spec!r} {reason}; rlprune runs code only from the "
        f"command line: pass --model {spec} to trust it"
    )


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
                f"cannot import module {target!r} for model spec {spec!r}: {one_line(exc)}; "
                "check the module name and that it imports cleanly"
            ) from exc

    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise ModelError(
            f"{target!r} has no attribute {attr!r} (model spec {spec!r}); "
            f"names it defines: {preview(public)}"
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
            f"cannot import model file {str(path)!r}: {one_line(exc)}; fix the error in that file"
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
            f"model {spec!r} failed to build with {call_kwargs}: {one_line(exc)}; "
            "check the model arguments"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(
            f"model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module; "
            "make the factory return the model"
        )
    return model
