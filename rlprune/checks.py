"""Settings fields that carry their help and type, checked in one place.

:func:`setting` declares a dataclass field with its help text and its kind (``"str"``,
``"positive int?"`` for a nullable positive integer, ...); :func:`check_kinds` checks an
instance's values against them, so a new setting is one field and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["check_kinds", "flagged", "help_for", "setting"]

_WORDS = {
    "str": "a string",
    "mapping": "a mapping",
    "bool": "true or false",
    "int": "an integer",
    "positive int": "a positive integer",
    "non-negative int": "a non-negative integer",
    "number": "a number",
    "positive number": "a positive number",
    "list of str": "a list of names",
}


def setting(
    default: Any,
    help: str,
    kind: str | None = None,
    example: str | None = None,
    *,
    choices: tuple[Any, ...] = (),
    agent: bool = False,
    policy: bool = False,
) -> Any:
    """A dataclass field with ``help`` and the ``kind`` its value must have (``?``: or null).

    ``choices``: the values allowed. ``agent``: an agent preset may set it (under ``env:``);
    ``policy``: a policy artifact records it and plays with it. A mutable ``default`` (a
    dict) becomes a default factory. ``kind=None``: checked apart.
    """
    metadata = {
        "help": help,
        "kind": kind,
        "example": example,
        "choices": choices,
        "agent": agent,
        "policy": policy,
    }
    if isinstance(default, dict):
        return dataclasses.field(default_factory=dict, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _kind_ok(kind: str, value: Any) -> bool:
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    checks = {
        "str": isinstance(value, str),
        "mapping": isinstance(value, Mapping),
        "bool": isinstance(value, bool),
        "int": is_int,
        "positive int": is_int and value >= 1,
        "non-negative int": is_int and value >= 0,
        "number": is_number,
        "positive number": is_number and value > 0,
        "list of str": isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
    }
    return checks[kind]


def check_kinds(instance: Any) -> None:
    """Raise :class:`ConfigError` for the first field whose value has the wrong kind (e.g.
    ``min_keep: "abc"``, ``budget_clipping: "no"``, ``ignored_layers: features.0``)."""
    for f in dataclasses.fields(instance):
        kind = f.metadata.get("kind")
        value = getattr(instance, f.name)
        choices = f.metadata.get("choices")
        if choices and (kind is None or _kind_ok(kind, value)) and value not in choices:
            raise ConfigError(
                f"unknown {f.name} {value!r}; choose one of: {', '.join(str(c) for c in choices)}"
            )
        if kind is None or _kind_ok(kind, value):
            continue
        example = f.metadata.get("example") or (
            "true" if isinstance(f.default, bool) else f.default
        )
        if example is None or example is dataclasses.MISSING:
            example = "1" if "int" in kind else "..."
        nullable = " (or null)" if kind.endswith("?") else ""
        raise ConfigError(
            f"preset key {f.name!r} must be {_WORDS[kind.rstrip('?')]}{nullable}, got {value!r} "
            f"({type(value).__name__}); e.g. {f.name}: {example}"
        )


def flagged(classes: tuple[Any, ...], flag: str) -> tuple[str, ...]:
    """Names of the fields of ``classes`` whose ``flag`` (``agent``, ``policy``) is set."""
    return tuple(f.name for c in classes for f in dataclasses.fields(c) if f.metadata.get(flag))


def help_for(cls: Any, name: str) -> str:
    """The help text of field ``name`` of the dataclass ``cls``."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return str(f.metadata["help"])
    raise KeyError(name)
