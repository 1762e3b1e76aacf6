"""Typed errors with one meaning each.

Every error a user can cause is a subclass of :class:`RLPruneError`, which is a
``ValueError``, so callers may catch either. The CLI prints ``str(error)`` on one
line and exits non-zero; messages name the bad value and the fix.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

__all__ = [
    "BudgetError",
    "ConfigError",
    "DatasetError",
    "ModelError",
    "RLPruneError",
    "ResetNeeded",
    "RunError",
    "one_line",
    "preview",
    "run_script",
]


class RLPruneError(ValueError):
    """Base class for user-facing errors raised by rlprune."""


class ConfigError(RLPruneError):
    """A preset, override or argument has a bad value or an unknown key."""


class DatasetError(RLPruneError):
    """A dataset is missing, corrupt or does not fit the model."""


class ModelError(RLPruneError):
    """A model spec cannot be resolved, or the model does not fit its data or weights."""


class BudgetError(RLPruneError):
    """A MACs target is out of range or cannot be reached."""


class ResetNeeded(RLPruneError):
    """``step()`` was called before ``reset()`` or after the episode ended."""


class RunError(RLPruneError):
    """A run folder is missing, unreadable, or could not be written."""


def one_line(exc: BaseException) -> str:
    """``"TypeName: message"`` on one line, at most ~300 characters, for error messages."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def preview(items: Sequence[str], limit: int = 3) -> str:
    """``"[a, b, c, ... (+2 more)]"``: the first ``limit`` items of a list, for messages."""
    shown = ", ".join(items[:limit])
    more = f", ... (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def run_script(main: Callable[[], int | None]) -> int:
    """Run a script's ``main`` as the CLI runs a command: an :class:`RLPruneError` (a bad
    ``--env``, a missing policy) is one line on stderr and exit status 2, Ctrl-C is 130;
    ``RLPRUNE_DEBUG=1`` in the environment shows the traceback instead."""
    try:
        return int(main() or 0)
    except RLPruneError as error:
        if os.environ.get("RLPRUNE_DEBUG"):
            raise
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if os.environ.get("RLPRUNE_DEBUG"):
            raise
        print("interrupted", file=sys.stderr)
        return 130
