"""Every search method the benchmark knows, in one registry: name -> :class:`SearchMethod`.

The CLI's ``--methods`` help, the defaults, the benchmark, the demo and the suite all
read it, so a method added here is known everywhere. In the order listed:

- agents (:mod:`~rlprune.search.agents`): every bundled agent preset, trained from scratch;
- baselines, which search the task directly: random sampling (:mod:`~rlprune.search.random_search`:
  ``random``, ``eagleeye``), Optuna's samplers (:mod:`~rlprune.search.optuna_search`: ``tpe``,
  ``cmaes``) and heuristics (:mod:`~rlprune.search.heuristics`: ``uniform``, ``magnitude``,
  ``sensitivity``);
- transfer (:mod:`~rlprune.search.transfer`): a policy trained elsewhere, zero-shot, adapted or
  refined, or as ``rlprune apply`` delivers it (with and without ``--refine``).
"""

from __future__ import annotations

from ..errors import ConfigError
from .agents import agent_methods
from .base import BaselineMethod, SearchMethod
from .heuristics import MAGNITUDE, SENSITIVITY, UNIFORM
from .optuna_search import CMAES, TPE
from .random_search import EAGLEEYE, RANDOM
from .transfer import (
    TRANSFER,
    TRANSFER_ADAPT,
    TRANSFER_APPLY,
    TRANSFER_APPLY_REFINE,
    TRANSFER_REFINE,
)

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "METHODS",
    "RECOMMENDED",
    "TRANSFER_METHODS",
    "get_baseline",
    "get_method",
    "methods_help",
    "valid_methods",
]

BASELINES: dict[str, BaselineMethod] = {
    method.name: method
    for method in (RANDOM, EAGLEEYE, TPE, CMAES, UNIFORM, MAGNITUDE, SENSITIVITY)
}
"""Every baseline by name: the methods that need no agent and no policy."""

_TRANSFERS = (TRANSFER, TRANSFER_ADAPT, TRANSFER_REFINE, TRANSFER_APPLY, TRANSFER_APPLY_REFINE)
TRANSFER_METHODS: tuple[str, ...] = tuple(method.name for method in _TRANSFERS)
"""The methods that play ``--policy`` (and record ``trust`` in a benchmark's settings)."""

METHODS: dict[str, SearchMethod] = {
    **{method.name: method for method in agent_methods()},
    **BASELINES,
    **{method.name: method for method in _TRANSFERS},
}
"""Every method by name."""

RECOMMENDED = "ppo"
"""rlprune's recommended agent: the reference every other method is compared with."""

DEFAULT_METHODS: tuple[str, ...] = (
    RECOMMENDED,
    "ppo-v1",
    "random",
    "eagleeye",
    "tpe",
    "cmaes",
    "uniform",
    "magnitude",
    "sensitivity",
)
"""What ``rlprune benchmark``, the demo and the suite compare unless told otherwise."""


def valid_methods() -> list[str]:
    """Every method name the benchmark knows."""
    return list(METHODS)


def get_method(name: str) -> SearchMethod:
    """The method called ``name``; :class:`ConfigError` lists the valid names otherwise."""
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(valid_methods())}")
    return METHODS[name]


def get_baseline(name: str) -> BaselineMethod:
    """The baseline called ``name``; :class:`ConfigError` lists the valid names otherwise."""
    if name not in BASELINES:
        raise ConfigError(
            f"unknown baseline method {name!r}; choose one of: {', '.join(sorted(BASELINES))}"
        )
    return BASELINES[name]


def methods_help() -> str:
    """The ``--methods`` help text: every method with its description."""
    listed = "; ".join(f"{m.name}: {m.description}" for m in METHODS.values())
    return f"comma-separated methods (default: {', '.join(DEFAULT_METHODS)}). {listed}"
