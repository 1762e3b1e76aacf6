"""Every search method the benchmark knows, in one registry: agents, baselines, transfer.

The CLI's ``--methods`` help, the benchmark's validation, the demo and the suite all
read it, so a method added here is known everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..presets.loader import available_agents, read_preset, resolve_preset
from .base import BaselineMethod
from .heuristics import MAGNITUDE, SENSITIVITY, UNIFORM
from .optuna_search import CMAES, TPE
from .random_search import EAGLEEYE, RANDOM

__all__ = [
    "BASELINES",
    "DEFAULT_METHODS",
    "RECOMMENDED",
    "METHODS",
    "TRANSFER_METHODS",
    "MethodInfo",
    "get_baseline",
    "methods_help",
    "valid_methods",
]


BASELINES: dict[str, BaselineMethod] = {
    method.name: method
    for method in (RANDOM, EAGLEEYE, TPE, CMAES, UNIFORM, MAGNITUDE, SENSITIVITY)
}
"""Every baseline by name: the methods that need no agent and no policy."""


def get_baseline(name: str) -> BaselineMethod:
    """The baseline called ``name``; :class:`ConfigError` lists the valid names otherwise."""
    if name not in BASELINES:
        raise ConfigError(
            f"unknown baseline method {name!r}; choose one of: {', '.join(sorted(BASELINES))}"
        )
    return BASELINES[name]


@dataclass(frozen=True)
class MethodInfo:
    """A search method's name, kind and one-line description."""

    name: str
    kind: str
    """``agent`` (trained from scratch), ``baseline`` or ``transfer`` (a policy from elsewhere)."""
    description: str


TRANSFER_METHODS = ("transfer", "transfer-adapt", "transfer-refine")


def _agent_description(name: str) -> str:
    """A bundled agent preset's one-line description: its ``description:`` key."""
    raw = read_preset("agent", resolve_preset("agent", name))
    algo = str((raw.get("default") or {}).get("algo", "ppo")).upper()
    return str(raw.get("description", f"{algo} (Stable-Baselines3) trained from scratch"))


METHODS: dict[str, MethodInfo] = {
    **{name: MethodInfo(name, "agent", _agent_description(name)) for name in available_agents()},
    **{name: MethodInfo(name, "baseline", b.description) for name, b in BASELINES.items()},
    "transfer": MethodInfo(
        "transfer", "transfer", "a policy trained elsewhere (--policy), zero-shot (1 evaluation)"
    ),
    "transfer-adapt": MethodInfo(
        "transfer-adapt",
        "transfer",
        "the --policy adapted for --adapt-episodes on this model (1 + episodes evaluations)",
    ),
    "transfer-refine": MethodInfo(
        "transfer-refine",
        "transfer",
        "the --policy's zero-shot configuration refined by a TPE search of --adapt-episodes "
        "evaluations within 0.25 keep-ratio of it, three quarters screening on a quarter of "
        "the validation set, the best screened then scored in full (1 + that many evaluations)",
    ),
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


def methods_help() -> str:
    """The ``--methods`` help text: every method with its description."""
    listed = "; ".join(f"{m.name}: {m.description}" for m in METHODS.values())
    return f"comma-separated methods (default: {','.join(DEFAULT_METHODS)}). {listed}"
