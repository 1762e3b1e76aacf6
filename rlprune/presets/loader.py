"""One loader for every preset: bundled name or YAML path, read safely, checked, merged.

Env presets (``envs/*.yaml``) become an :class:`~rlprune.evaluation.config.EnvConfig`; agent
presets (``agents/*.yaml``, rl-baselines3-zoo style: a ``default:`` entry and optional
per-env entries) become a plain mapping that :mod:`rlprune.rl.agents` validates against
the algorithm it names. Both kinds are found, read and checked by the same code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..mdp.settings import EnvConfig, make_config

__all__ = [
    "AGENT_DIR",
    "ENV_DIR",
    "GENERAL_POLICY",
    "POLICY_DIR",
    "available_agents",
    "available_presets",
    "env_spec",
    "load_agent_values",
    "load_env_config",
    "read_preset",
    "resolve_preset",
]

PRESET_ROOT = Path(__file__).resolve().parent
ENV_DIR = PRESET_ROOT / "envs"
"""Bundled environment presets (``envs/``, linked into the package)."""
AGENT_DIR = PRESET_ROOT / "agents"
"""Bundled agent presets (``agents/``, linked into the package)."""
POLICY_DIR = PRESET_ROOT / "policies"
"""Bundled policies (``policies/``, linked into the package)."""
GENERAL_POLICY = POLICY_DIR / "general"
"""The general policy ``rlprune apply`` uses when no ``--policy`` is given
(made by ``experiments/train_general_policy.py``)."""
_DIRS = {"env": ENV_DIR, "agent": AGENT_DIR}
_SHAPES = {
    "env": "must be a mapping of keys to values",
    "agent": "must map 'default' and env names to settings",
}


def _bundled(kind: str) -> list[str]:
    return sorted(p.stem for p in _DIRS[kind].glob("*.yaml"))


def available_presets() -> list[str]:
    """Names of the bundled environment presets."""
    return _bundled("env")


def available_agents() -> list[str]:
    """Names of the bundled agent presets."""
    return _bundled("agent")


def resolve_preset(kind: str, name_or_path: str | os.PathLike[str]) -> Path:
    """The preset file of ``kind`` (``"env"`` or ``"agent"``) for a bundled name or a path.

    Raises:
        ConfigError: the file does not exist, or the name is not bundled.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"{kind} preset file {str(path)!r} not found")
        return path
    bundled = _DIRS[kind] / f"{name_or_path}.yaml"
    if not bundled.is_file():
        raise ConfigError(
            f"unknown {kind} preset {str(name_or_path)!r}; choose one of: "
            f"{', '.join(_bundled(kind))} or give a path to a YAML file"
        )
    return bundled


def read_preset(kind: str, path: Path) -> dict[str, Any]:
    """The mapping a preset file holds (``yaml.safe_load``; empty file: ``{}``).

    Raises:
        ConfigError: the file is not valid YAML or not a mapping.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{kind} preset {str(path)!r} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{kind} preset {str(path)!r} is not valid YAML: {exc}".splitlines()[0]
        ) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind} preset {str(path)!r} {_SHAPES[kind]}")
    return raw


def env_spec(name: str, root: Path | None = None) -> str:
    """``name`` as :func:`load_env_config` takes it: a bundled preset name as given, a
    relative YAML path (``.yaml``/``.yml``) looked up under ``root`` when one is given (a
    script's repository, so it runs from any working directory)."""
    if root is not None and name.endswith((".yaml", ".yml")):
        return str(root / name)  # an absolute name stays itself
    return name


def load_env_config(
    env: str | os.PathLike[str] = "digits-cnn", overrides: Mapping[str, Any] | None = None
) -> EnvConfig:
    """Load an env preset (bundled name or YAML path) and apply ``overrides`` (``None`` ignored).

    Paths in the file are relative to the file; override paths are taken as given
    (relative to the working directory).
    """
    path = resolve_preset("env", env)
    raw = read_preset("env", path)
    raw.setdefault("name", path.stem)
    config = make_config(raw, base_dir=path.parent)
    extra = {k: v for k, v in (overrides or {}).items() if v is not None}
    if extra:
        config = config.derive(extra, base_dir=Path.cwd())
    return config


def load_agent_values(agent: str | os.PathLike[str], env_name: str) -> tuple[str, dict[str, Any]]:
    """The preset name and the settings of an agent preset for ``env_name``.

    The ``default:`` entry is updated with the ``env_name`` entry if there is one
    (``policy_kwargs`` merged key by key).
    """
    path = resolve_preset("agent", agent)
    raw = read_preset("agent", path)
    default = raw.get("default") or {}
    specific = raw.get(env_name) or {}
    if not isinstance(default, dict) or not isinstance(specific, dict):
        raise ConfigError(f"agent preset {str(path)!r} {_SHAPES['agent']}")
    for entry in (default, specific):
        if not isinstance(entry.get("policy_kwargs", {}), dict):
            raise ConfigError(
                f"policy_kwargs in agent preset {str(path)!r} must be a mapping, "
                "e.g. {net_arch: [64, 64]}"
            )
    values = dict(default)
    merged_kwargs = {**values.get("policy_kwargs", {}), **specific.get("policy_kwargs", {})}
    values.update(specific)
    if merged_kwargs:
        values["policy_kwargs"] = merged_kwargs
    return path.stem, values
