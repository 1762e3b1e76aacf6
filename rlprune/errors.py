"""Typed errors with one meaning each.

Every error a user can cause is a subclass of :class:`RLPruneError`, which is a
``ValueError``, so callers may catch either. The CLI prints ``str(error)`` on one
line and exits non-zero; messages name the bad value and the fix.
"""

from __future__ import annotations


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
