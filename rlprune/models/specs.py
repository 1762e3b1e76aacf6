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

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..code import fingerprint, is_trusted_code, resolve_callable, untrusted_reason
from ..errors import ModelError, one_line
from .zoo import MODELS

__all__ = ["build_model", "check_recorded_spec", "resolve_factory", "spec_fingerprint"]


def spec_fingerprint(spec: str) -> str | None:
    """sha256 of the file holding a spec's code (``None`` for zoo models, whose code is
    rlprune's own): recorded in run folders so that a resume runs only that code."""
    return fingerprint(spec, MODELS)


def check_recorded_spec(spec: str, recorded: str | None, where: str) -> None:
    """Refuse to import model code named in a file rlprune wrote (a run folder) unless it
    is a zoo model, rlprune's own code, or a file this user trusted when training and
    unchanged since (:func:`rlprune.code.is_trusted_code`); ``recorded`` (the folder's
    :func:`spec_fingerprint`) only words the message.

    Raises:
        ModelError: the code is missing, changed, or not trusted here; the message says to
            pass ``--model`` to trust it.
    """
    if is_trusted_code(spec, MODELS):
        return
    raise ModelError(
        f"{where} names model code {spec!r} {untrusted_reason(spec, recorded, MODELS)}; "
        f"rlprune runs code a run folder names only if you name it: pass --model {spec} to "
        "trust it"
    )


def resolve_factory(spec: str) -> Callable[..., nn.Module]:
    """Return the model factory a spec names: a registry name, ``module:attr`` or ``file.py:attr``.

    Raises:
        ModelError: unknown name, missing file, import failure, missing attribute, or an
            attribute that is not callable.
    """
    return resolve_callable(
        spec, kind="model", builtin=MODELS, error=ModelError, returns="an nn.Module"
    )


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
