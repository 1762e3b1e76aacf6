"""Atomic file writes (a reader sees the old file or the new one, never half of one), and
rlprune's cache folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_dir",
    "check_output_dir",
    "file_digest",
    "resolve_cached",
    "publish_dir",
    "safe_name",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")

CACHE_PREFIX = "cache:"
"""A path that starts with this lies under :func:`cache_dir` (``cache:zoo/resnet18.pt``)."""


def cache_dir() -> Path:
    """rlprune's cache folder (latency models, the torchvision zoo's weights):
    ``$RLPRUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/rlprune`` (``~/.cache/rlprune``)."""
    explicit = os.environ.get("RLPRUNE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "rlprune"


def resolve_cached(path: str) -> str:
    """``path`` with a leading ``cache:`` replaced by :func:`cache_dir` (others unchanged)."""
    if path.startswith(CACHE_PREFIX):
        return str(cache_dir() / path[len(CACHE_PREFIX) :])
    return path


def file_digest(path: str | os.PathLike[str]) -> str:
    """A short content hash (16 hex digits of sha256) of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def safe_name(text: str, fallback: str = "unnamed") -> str:
    """``text`` as one safe file or folder name inside an output folder: every run of
    characters other than letters, digits and ``._+=-`` (``/``, ``\\``, spaces, ...) becomes
    ``_`` and leading dots go, so a name such as ``../../x`` or ``/etc/x`` cannot leave the
    folder; at most 100 characters; ``fallback`` when nothing is left."""
    name = _UNSAFE.sub("_", str(text)).lstrip(".")[:100]
    return name or fallback


def check_output_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """Make sure ``path`` can be an output folder before any work starts: it is a folder
    (or can be created) and a file can be written in it. Creates it.

    Raises:
        RunError: it is a file, or it cannot be created or written (read-only, no space).
    """
    from .errors import RunError

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"output folder {folder} is a file; remove it or choose another {flag}")
    probe = folder / f".rlprune-write-check-{secrets.token_hex(4)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"ok")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RunError(
            f"cannot write to output folder {folder} ({reason}); choose another {flag}"
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    return folder


def publish_dir(staging: Path, target: Path) -> None:
    """Move everything in ``staging`` into ``target`` (created), replacing entries of the
    same name, then remove ``staging``: the last step of writing a folder that is never
    seen half-written (renames within one file system cannot run out of space)."""
    import shutil

    target.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        dest = target / item.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(item, dest)
    staging.rmdir()


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The caller writes the temporary file; it is flushed to disk and moved into place
    with :func:`os.replace` when the block ends, and deleted if the block raises.
    Parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than mkstemp, which would make the file owner-only (0600)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    tmp.open("xb").close()
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], value: Any) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(value, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars, tuples and paths."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
