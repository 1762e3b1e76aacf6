"""Training checkpoints that resume a run exactly where it was.

A checkpoint is taken at an *update boundary*: after the algorithm's last update
and before it collects the next rollout (PPO: every ``episodes_per_update``
episodes; DDPG/TD3: every episode). There every environment has just been reset,
so the whole state of the run fits in a few plain records:

* ``params.pt``: the policy's and its optimizers' state dicts (Stable-Baselines3's
  ``get_parameters``), loaded with ``torch.load(..., weights_only=True)``;
* ``state.json``: the episode and step counters, the random-number generators
  (Python, NumPy, torch, each environment's ``np_random`` and the action space's),
  each environment's MACs target and the observation the next rollout starts
  from, and the seconds the run had taken;
* ``best.json``: the best candidate among the episodes the checkpoint covers;
* ``replay.npz`` (DDPG/TD3 only): the filled part of the replay buffer, loaded
  with ``allow_pickle=False``.

Restoring these into a freshly built algorithm continues the run with exactly
the episodes an uninterrupted run would have had. Nothing is unpickled.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from ..errors import RunError
from ..files import atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT",
    "Snapshot",
    "capture",
    "latest_checkpoint",
    "read_checkpoint",
    "restore",
    "write_checkpoint",
]

FORMAT = 2
"""Checkpoint format: 2 resumes exactly; 1 (no ``format`` key) held weights and counters only."""

_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_BIT_GENERATORS = {"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"}


@dataclass(frozen=True)
class Snapshot:
    """A run's state at one update boundary, held in memory until it is written."""

    episodes: int
    """Episodes finished (and logged) when the snapshot was taken."""
    params: bytes
    """``torch.save`` of the algorithm's parameters (policy and optimizer state dicts)."""
    state: dict[str, Any]
    """Plain-JSON state: counters, generators, environments, next observation."""
    best: dict[str, Any] | None
    """``best.json`` of the episodes covered (``None`` before the first)."""
    replay: bytes | None = None
    """``np.savez`` of the replay buffer's filled rows (off-policy algorithms)."""

    @property
    def exact(self) -> bool:
        """Whether it holds everything needed to continue exactly (format 2)."""
        return self.state.get("format") == FORMAT


def _generator_state(generator: np.random.Generator) -> dict[str, Any]:
    return dict(generator.bit_generator.state)


def _set_generator_state(generator: np.random.Generator, state: dict[str, Any]) -> None:
    name = state.get("bit_generator")
    if name not in _BIT_GENERATORS or generator.bit_generator.state["bit_generator"] != name:
        raise ValueError(f"unexpected random generator {name!r}")
    generator.bit_generator.state = state


def capture(
    algorithm: BaseAlgorithm,
    vec_env: DummyVecEnv,
    *,
    episodes: int,
    elapsed_s: float,
    best: dict[str, Any] | None,
) -> Snapshot:
    """The state of ``algorithm`` and its environments now, which must be an update
    boundary (every environment just reset, no rollout in progress)."""
    buffer = io.BytesIO()
    torch.save(algorithm.get_parameters(), buffer)
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    py_version, py_internal, py_gauss = random.getstate()
    last_obs = np.asarray(algorithm._last_obs)
    state: dict[str, Any] = {
        "format": FORMAT,
        "episodes": episodes,
        "num_timesteps": int(algorithm.num_timesteps),
        "n_updates": int(getattr(algorithm, "_n_updates", 0)),
        "episode_num": int(algorithm._episode_num),
        "elapsed_s": float(elapsed_s),
        "rng": {
            "python": [py_version, list(py_internal), py_gauss],
            "numpy": [np_name, np.asarray(np_keys).tolist(), np_pos, np_has_gauss, np_gauss],
            "torch": torch.get_rng_state().tolist(),
            "action_space": _generator_state(algorithm.action_space.np_random),
        },
        "envs": [
            {
                "target": float(vec_env.reset_infos[i]["target"]),
                # a family env's member network (rlprune.rl.family), else absent
                **(
                    {"member": vec_env.reset_infos[i]["member"]}
                    if "member" in vec_env.reset_infos[i]
                    else {}
                ),
                "np_random": _generator_state(env.np_random),
                "anchors": _anchor_state(env),
            }
            for i, env in enumerate(vec_env.envs)
        ],
        "last_obs": last_obs.astype(np.float64).tolist(),
        "last_obs_dtype": str(last_obs.dtype),
        "last_episode_starts": np.asarray(algorithm._last_episode_starts, dtype=bool).tolist(),
    }
    replay = None
    if isinstance(algorithm, OffPolicyAlgorithm) and algorithm.replay_buffer is not None:
        rb = algorithm.replay_buffer
        rows = rb.buffer_size if rb.full else rb.pos
        arrays = {
            name: getattr(rb, name)[:rows]
            for name in _REPLAY_ARRAYS
            if isinstance(getattr(rb, name, None), np.ndarray)
        }
        data = io.BytesIO()
        np.savez(data, **arrays)
        replay = data.getvalue()
        state["replay"] = {"pos": int(rb.pos), "full": bool(rb.full), "rows": int(rows)}
    return Snapshot(episodes, buffer.getvalue(), state, best, replay)


def restore(snapshot: Snapshot, algorithm: BaseAlgorithm, vec_env: DummyVecEnv) -> None:
    """Put ``snapshot`` into a freshly built ``algorithm`` over ``vec_env``.

    Raises:
        RunError: the snapshot does not fit this algorithm or environment (another
            network, agent or number of environments), or is damaged.
    """
    where = f"checkpoint ep{snapshot.episodes:06d}"
    try:
        params = torch.load(io.BytesIO(snapshot.params), map_location="cpu", weights_only=True)
        algorithm.set_parameters(params, exact_match=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file
        raise RunError(
            f"{where}: params.pt does not fit this agent ({type(exc).__name__}); "
            "start a new run without --resume"
        ) from None
    if not all(torch.isfinite(t).all() for t in _tensors(params)):
        raise RunError(
            f"{where}: params.pt holds NaN or inf weights; point checkpoints/latest.json at "
            "an earlier checkpoint, or start a new run without --resume"
        )
    state = snapshot.state
    algorithm.num_timesteps = int(state["num_timesteps"])
    if not snapshot.exact:
        return
    try:
        _restore_exact(state, snapshot.replay, algorithm, vec_env)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise RunError(
            f"{where}: its state does not fit this run ({type(exc).__name__}: {exc}); the "
            "folder's model, weights or preset may have changed; start a new run"
        ) from None


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every floating-point tensor in a nested dict or list of state dicts."""
    if isinstance(value, torch.Tensor):
        return [value] if value.is_floating_point() else []
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _anchor_state(env: Any) -> list[list[float]]:
    """A :class:`~rlprune.env.pruning_env.PruningEnv`'s ``anchor: best`` memory (none for
    other environments)."""
    state = getattr(env.unwrapped, "anchor_state", None)
    return state() if callable(state) else []


def _restore_exact(
    state: dict[str, Any], replay: bytes | None, algorithm: BaseAlgorithm, vec_env: DummyVecEnv
) -> None:
    algorithm._n_updates = int(state["n_updates"])
    algorithm._episode_num = int(state["episode_num"])
    envs = state["envs"]
    if len(envs) != vec_env.num_envs:
        raise ValueError(f"{len(envs)} environments saved, {vec_env.num_envs} built")
    last_obs = np.asarray(state["last_obs"], dtype=np.dtype(state["last_obs_dtype"]))
    for i, (env, saved) in enumerate(zip(vec_env.envs, envs, strict=True)):
        if hasattr(env.unwrapped, "set_anchor_state"):
            env.unwrapped.set_anchor_state(saved.get("anchors", []))
        # the target (and a family's member) the environment drew when it was reset,
        # without drawing it again
        options: dict[str, Any] = {"target": float(saved["target"])}
        if "member" in saved:
            options["member"] = str(saved["member"])
        obs, info = env.reset(options=options)
        if not np.array_equal(obs, last_obs[i]):
            raise ValueError("the environment's first observation differs from the saved one")
        vec_env.reset_infos[i] = info
        _set_generator_state(env.np_random, saved["np_random"])
    algorithm._last_obs = last_obs
    algorithm._last_episode_starts = np.asarray(state["last_episode_starts"], dtype=bool)
    if isinstance(algorithm, OffPolicyAlgorithm) and algorithm.replay_buffer is not None:
        _restore_replay(state["replay"], replay, algorithm)
    rng = state["rng"]
    version, internal, gauss = rng["python"]
    random.setstate((int(version), tuple(int(x) for x in internal), gauss))
    name, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((str(name), np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(rng["torch"], dtype=torch.uint8))
    _set_generator_state(algorithm.action_space.np_random, rng["action_space"])


def _restore_replay(
    meta: dict[str, Any], replay: bytes | None, algorithm: OffPolicyAlgorithm
) -> None:
    if replay is None:
        raise ValueError("replay.npz is missing")
    rb = algorithm.replay_buffer
    assert rb is not None
    rows = int(meta["rows"])
    with np.load(io.BytesIO(replay), allow_pickle=False) as arrays:
        for name in arrays.files:
            target = getattr(rb, name, None)
            if name not in _REPLAY_ARRAYS or not isinstance(target, np.ndarray):
                raise ValueError(f"unexpected replay array {name!r}")
            data = arrays[name]
            if data.shape != (rows, *target.shape[1:]):
                raise ValueError(f"replay array {name!r} has shape {data.shape}")
            target[:rows] = data
    rb.pos = int(meta["pos"])
    rb.full = bool(meta["full"])


def write_checkpoint(snapshot: Snapshot, root: Path, *, reason: str) -> Path:
    """Write ``snapshot`` as ``root/epNNNNNN/`` and point ``root/latest.json`` at it.

    The folder is built under a temporary name and renamed, and ``latest.json`` is
    replaced atomically last, so a crash at any point leaves the previous checkpoint
    in use. ``reason`` (``episodes``, ``time``, ``end``, ``interrupt``) is recorded;
    a checkpoint written only because time had passed is removed once a newer one
    exists, so long runs keep a bounded number of folders.

    Raises:
        OSError: the checkpoint could not be written.
    """
    name = f"ep{snapshot.episodes:06d}"
    tmp = root / f".tmp-{name}"
    previous = latest_checkpoint(root.parent)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        atomic_write_bytes(tmp / "params.pt", snapshot.params)
        if snapshot.replay is not None:
            atomic_write_bytes(tmp / "replay.npz", snapshot.replay)
        if snapshot.best is not None:
            atomic_write_json(tmp / "best.json", snapshot.best)
        atomic_write_json(tmp / "state.json", {**snapshot.state, "reason": reason})
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        atomic_write_json(
            root / "latest.json",
            {
                "checkpoint": name,
                "episodes": snapshot.episodes,
                "num_timesteps": snapshot.state["num_timesteps"],
            },
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if previous is not None and previous.name != name and _reason(previous) == "time":
        shutil.rmtree(previous, ignore_errors=True)
    return final


def _reason(checkpoint: Path) -> str | None:
    try:
        reason = json.loads((checkpoint / "state.json").read_text()).get("reason")
    except (OSError, ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


def read_checkpoint(path: Path) -> Snapshot:
    """Load the checkpoint folder ``path`` (written by :func:`write_checkpoint`).

    Raises:
        RunError: a file is missing or damaged.
    """
    try:
        state = json.loads((path / "state.json").read_text())
        if not isinstance(state, dict):
            raise ValueError("state.json is not a JSON object")
        episodes = int(state["episodes"])
        if episodes < 0 or int(state["num_timesteps"]) < 0:
            raise ValueError("state.json: episodes and num_timesteps must be 0 or more")
        best_file = path / "best.json"
        best = json.loads(best_file.read_text()) if best_file.is_file() else None
        replay_file = path / "replay.npz"
        replay = replay_file.read_bytes() if replay_file.is_file() else None
        params = (path / "params.pt").read_bytes()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise RunError(
            f"checkpoint {path} is damaged ({type(exc).__name__}: {detail}); delete "
            f"{path.parent / 'latest.json'} to resume from the start, or start a new run"
        ) from None
    return Snapshot(episodes, params, state, best, replay)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder ``run_dir/checkpoints/latest.json`` points to, if any."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or "/" in name or "\\" in name or name in ("", ".", ".."):
        return None
    path = run_dir / "checkpoints" / name
    return path if path.is_dir() else None
