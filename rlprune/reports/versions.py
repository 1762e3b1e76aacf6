"""Installed versions of the software a result depends on, for reports and run folders."""

from __future__ import annotations

import importlib.metadata
import platform

__all__ = ["VERSIONED_PACKAGES", "software_versions"]

VERSIONED_PACKAGES = ("torch", "stable-baselines3", "gymnasium", "torch-pruning", "rlprune")


def software_versions() -> dict[str, str]:
    """Installed versions of Python and the packages a result depends on.

    Packages that are not installed are reported as ``"not installed"``.
    """
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
