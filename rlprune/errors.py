"""Typed errors with one meaning each.

Every error a user can cause is a subclass of :class:`RLPruneError`, which is a
``ValueError``, so callers may catch either. The CLI prints ``str(error)`` on one
line and exits non-zero; messages name the bad value and the fix.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

__all__ = [
    "BudgetError",
    "ConfigError",
    "DatasetError",
    "ModelError",
    "RLPruneError",
    "ResetNeeded",
    "RunError",
    "Terminated",
    "one_line",
    "preview",
    "run_script",
    "sigterm_stops_like_ctrl_c",
    "stop_status",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it stops (and cleans up) as Ctrl-C does."""

    signum = signal.SIGTERM


@contextmanager
def sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def stop_status(interrupt: KeyboardInterrupt) -> int:
    """The exit status for an interrupt: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(getattr(interrupt, "signum", signal.SIGINT))


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
    ``--env``, a missing policy) is one line on stderr and exit status 2, Ctrl-C is 130 and
    SIGTERM 143;
    ``RLPRUNE_DEBUG=1`` in the environment shows the traceback instead."""
    try:
        with sigterm_stops_like_ctrl_c():
            return int(main() or 0)
    except RLPruneError as error:
        if os.environ.get("RLPRUNE_DEBUG"):
            raise
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        if os.environ.get("RLPRUNE_DEBUG"):
            raise
        print("interrupted", file=sys.stderr)
        return stop_status(error)
