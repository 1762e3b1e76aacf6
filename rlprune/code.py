"""Code named by a spec string: ``package.module:attr`` or ``path/to/file.py:attr``.

Models (:mod:`rlprune.models.specs`) and datasets (:mod:`rlprune.data.datasets`) are both
named this way; this module resolves such a spec to the callable it names, finds the file
its code lives in without importing it, and fingerprints that file (so that a run folder
can refuse to import code that changed since it was written).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

from .errors import RLPruneError, one_line, preview

__all__ = ["fingerprint", "is_code_spec", "resolve_callable", "source_file"]


def is_code_spec(spec: str) -> bool:
    """Whether ``spec`` has the ``target:attr`` form of a code spec."""
    return ":" in str(spec)


def source_file(spec: str, builtin: Container[str] = ()) -> Path | None:
    """The Python file a spec's code lives in, found without importing anything;
    ``None`` for built-in names and for files or modules that cannot be found."""
    spec = str(spec).strip()
    if spec in builtin or ":" not in spec:
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


def fingerprint(spec: str, builtin: Container[str] = ()) -> str | None:
    """sha256 of the file holding a spec's code (``None`` for built-in names)."""
    source = source_file(spec, builtin)
    return hashlib.sha256(source.read_bytes()).hexdigest() if source is not None else None


def resolve_callable(
    spec: str,
    *,
    kind: str,
    builtin: Mapping[str, Callable[..., Any]],
    error: type[RLPruneError],
    returns: str,
) -> Callable[..., Any]:
    """Return the callable a spec names: a ``builtin`` name, ``module:attr`` or ``file.py:attr``.

    ``kind`` ("model", "dataset") and ``returns`` (what the callable must return) word the
    messages; every failure raises ``error``.
    """
    spec = str(spec).strip()
    if spec in builtin:
        return builtin[spec]
    if ":" not in spec:
        raise error(
            f"unknown {kind} {spec!r}; use one of {sorted(builtin)}, 'package.module:factory' "
            "or 'path/to/file.py:factory'"
        )
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise error(
            f"{kind} spec {spec!r} is incomplete; write 'package.module:factory' or "
            "'path/to/file.py:factory'"
        )
    if target.endswith(".py") or "/" in target or os.sep in target:
        module = _import_file(target, spec, kind, error)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as exc:  # any import-time failure is the user's module's
            raise error(
                f"cannot import module {target!r} for {kind} spec {spec!r}: {one_line(exc)}; "
                "check the module name and that it imports cleanly"
            ) from exc

    if not hasattr(module, attr):
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise error(
            f"{target!r} has no attribute {attr!r} ({kind} spec {spec!r}); "
            f"names it defines: {preview(public)}"
        )
    factory = getattr(module, attr)
    if not callable(factory):
        raise error(
            f"{target}:{attr} is a {type(factory).__name__}, not callable; point the spec at "
            f"a function or class that returns {returns}"
        )
    return factory  # type: ignore[no-any-return]


def _import_file(target: str, spec: str, kind: str, error: type[RLPruneError]) -> Any:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise error(
            f"{kind} file {str(path)!r} not found ({kind} spec {spec!r}); give a path relative "
            f"to {str(Path.cwd())!r} or an absolute path"
        )
    path = path.resolve()
    # A unique, stable module name per file keeps two user files named model.py apart.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    module_name = f"rlprune_user_{kind}_{path.stem}_{digest}"
    import_spec = importlib.util.spec_from_file_location(module_name, path)
    if import_spec is None or import_spec.loader is None:
        raise error(f"cannot load {str(path)!r} as a Python module; give a .py file")
    module = importlib.util.module_from_spec(import_spec)
    # Registered before execution so dataclasses, pickling and self-imports see the module.
    sys.modules[module_name] = module
    try:
        import_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise error(
            f"cannot import {kind} file {str(path)!r}: {one_line(exc)}; fix the error in that file"
        ) from exc
    return module
