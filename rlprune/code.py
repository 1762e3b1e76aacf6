"""Code named by a spec string: ``package.module:attr`` or ``path/to/file.py:attr``.

Models (:mod:`rlprune.models.specs`) and datasets (:mod:`rlprune.data.datasets`) are both
named this way; this module resolves such a spec to the callable it names, finds the file
its code lives in without importing it, and fingerprints that file.

A run folder is data that anyone can copy, so code it names is not trusted for what it
says about itself (a checksum in the same folder only detects accidents). Code a run
folder names runs only if it is rlprune's own model or dataset code, or if this user
named it when training on this machine: :func:`trust_code` records its file and sha256
in a per-user list outside every run folder (:func:`trusted_code_file`), and
:func:`is_trusted_code` looks it up there.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import secrets
import sys
import warnings
from collections.abc import Callable, Container, Mapping
from pathlib import Path
from typing import Any

from .errors import RLPruneError, one_line, preview

__all__ = [
    "TRUSTED_CODE_ENV",
    "fingerprint",
    "is_code_spec",
    "is_trusted_code",
    "resolve_callable",
    "source_file",
    "trust_code",
    "trusted_code_file",
    "untrusted_reason",
]

TRUSTED_CODE_ENV = "RLPRUNE_TRUSTED_CODE"
"""Environment variable naming the trusted-code list (default: see :func:`trusted_code_file`)."""

_PACKAGE = Path(__file__).resolve().parent
_OWN_CODE = (_PACKAGE / "models", _PACKAGE / "data")
"""rlprune's own model and dataset code: a run folder may name it."""
_HASHES_PER_FILE = 20


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
    return Path(origin).resolve() if origin and Path(origin).is_file() else None


def fingerprint(spec: str, builtin: Container[str] = ()) -> str | None:
    """sha256 of the file holding a spec's code (``None`` for built-in names)."""
    source = source_file(spec, builtin)
    return hashlib.sha256(source.read_bytes()).hexdigest() if source is not None else None


def trusted_code_file() -> Path:
    """This user's list of trusted code files: ``$RLPRUNE_TRUSTED_CODE``, else
    ``$XDG_CONFIG_HOME/rlprune/trusted-code.json`` (``~/.config/rlprune/...``)."""
    given = os.environ.get(TRUSTED_CODE_ENV)
    if given:
        return Path(given).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "rlprune" / "trusted-code.json"


def _read_trusted() -> dict[str, list[str]]:
    """``{resolved file: [sha256, ...]}`` from the trusted-code list (empty if unreadable)."""
    try:
        raw = json.loads(trusted_code_file().read_text())
        files = raw.get("files", {}) if isinstance(raw, dict) else {}
        return {str(k): [str(h) for h in v] for k, v in files.items() if isinstance(v, list)}
    except (OSError, ValueError, AttributeError):
        return {}


def trust_code(spec: str, builtin: Container[str] = ()) -> None:
    """Record the file a spec's code lives in, at its current sha256, as trusted by this
    user (the user named it when training). Nothing for built-in names and rlprune's own
    code; a list that cannot be written is a warning (a resume then needs the flag again)."""
    source = source_file(spec, builtin)
    if source is None or _is_own_code(source):
        return
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    files = _read_trusted()
    hashes = [h for h in files.get(str(source), []) if h != digest] + [digest]
    files[str(source)] = hashes[-_HASHES_PER_FILE:]
    path = trusted_code_file()
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": "rlprune-trusted-code", "files": files}, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        warnings.warn(
            f"cannot record {str(source)!r} as trusted code in {str(path)!r} "
            f"({exc.strerror or type(exc).__name__}): a resume will ask for the flag again",
            stacklevel=2,
        )


def is_trusted_code(spec: str, builtin: Container[str] = ()) -> bool:
    """Whether code named by a file rlprune wrote may run: a built-in name, rlprune's own
    model or dataset code, or a file this user trusted (:func:`trust_code`) unchanged since."""
    if str(spec).strip() in builtin:
        return True
    source = source_file(spec, builtin)
    if source is None:
        return False
    if _is_own_code(source):
        return True
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return digest in _read_trusted().get(str(source), [])


def untrusted_reason(spec: str, recorded: str | None, builtin: Container[str] = ()) -> str:
    """Why code a run folder names is not trusted, for messages (``recorded``: the sha256
    the folder gives)."""
    current = fingerprint(spec, builtin)
    if current is None:
        return "whose file is missing"
    if recorded and current != recorded:
        return "whose file changed since training"
    if not recorded:
        return "with no recorded checksum"
    return (
        f"that you did not name when training on this machine (not in {trusted_code_file()}; "
        "a run folder's own checksum is no proof)"
    )


def _is_own_code(source: Path) -> bool:
    return any(source.resolve().is_relative_to(folder) for folder in _OWN_CODE)


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
