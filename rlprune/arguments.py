"""A script's arguments as one dataclass: a field per flag, its help text beside it.

The habit is CleanRL's: the configuration is one dataclass whose fields carry their help,
and derived values are computed in one visible place. :func:`parse` builds an
:mod:`argparse` parser from the dataclass (``--field-name`` for each field) and returns the
command line as an instance of it::

    @dataclass
    class Args:
        env: str = arg("fmnist-resnet20", "preset name or YAML path")
        targets: list[float] = arg([0.3, 0.5], "MACs targets, a,b,...", parse=fraction_list)
        resume: bool = arg(False, "keep finished results")

    args = parse(Args, description="What this script does.")

A field's type gives its flag's: ``bool`` is a switch (``store_true``, off by default);
``int``, ``float``, ``str`` and ``Path`` convert the text; ``X | None`` is ``X`` with no
value by default; anything else (a comma-separated list, ``T=PATH``) names its converter
with ``parse=``. ``nargs`` and ``append`` collect several values into a ``list[X]``
field. A field with no default is a required flag.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["arg", "build_parser", "parse"]

T = TypeVar("T")

_CONVERTED = (int, float, str, Path)
"""Field types whose flags convert their text with the type itself."""


def arg(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    parse: Callable[[str], Any] | None = None,
    nargs: str | None = None,
    append: bool = False,
    choices: Sequence[str] | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field that is a command-line flag: its ``default`` (none: the flag is
    required; a list is copied for each instance), its ``help``, and how its text becomes
    a value (``parse``; ``nargs`` or ``append`` for several values; ``choices``)."""
    metadata = {
        "help": help,
        "parse": parse,
        "nargs": nargs,
        "append": append,
        "choices": choices,
        "metavar": metavar,
    }
    if isinstance(default, list | dict | set):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _converter(name: str, kind: Any, several: bool) -> Callable[[str], Any]:
    """What turns a flag's text into a value of the field type ``kind`` (for ``several``
    values, ``kind`` is ``list[X]`` and the text becomes an ``X``)."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        kind = options[0] if len(options) == 1 else kind
    if several and typing.get_origin(kind) is list:
        (kind,) = typing.get_args(kind)
    if kind in _CONVERTED:
        return typing.cast(Callable[[str], Any], kind)
    raise TypeError(f"field {name!r} of type {kind}: give arg(..., parse=a converter)")


def build_parser(cls: type[Any], description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one ``--flag`` per field of the dataclass ``cls``."""
    parser = argparse.ArgumentParser(description=description)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        meta = field.metadata
        options: dict[str, Any] = {"dest": field.name, "help": meta.get("help") or None}
        if field.default is not dataclasses.MISSING:
            options["default"] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            options["default"] = field.default_factory()
        else:
            options["required"] = True
        several = bool(meta.get("nargs") or meta.get("append"))
        if hints[field.name] is bool:
            options["action"] = "store_true"
        else:
            options["type"] = meta.get("parse") or _converter(
                field.name, hints[field.name], several
            )
            if meta.get("nargs"):
                options["nargs"] = meta["nargs"]
            if meta.get("append"):
                options["action"] = "append"
            for key in ("choices", "metavar"):
                if meta.get(key) is not None:
                    options[key] = meta[key]
        parser.add_argument("--" + field.name.replace("_", "-"), **options)
    return parser


def parse(
    cls: type[T],
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
    check: Callable[[T], str | None] | None = None,
) -> T:
    """The command line ``argv`` (default: ``sys.argv[1:]``) as an instance of the
    dataclass ``cls``. ``check`` returns a message for arguments that parse but do not go
    together; like a bad value, it is a usage error (exit status 2) before any work."""
    parser = build_parser(cls, description)
    values = cls(**vars(parser.parse_args(argv)))
    message = check(values) if check is not None else None
    if message:
        parser.error(message)
    return values
