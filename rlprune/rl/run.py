"""The run base both trainers build on: the run folder, its checkpoints, resume and stopping.

A run folder ``runs/{env}__{agent}__{seed}__{time}/`` keeps everything needed to
reproduce or continue a run::

    config.yaml        resolved env preset, agent preset and training settings
                       (a family run, rlprune.rl.family: family.json)
    command.txt        the exact command
    versions.json      torch / stable-baselines3 / gymnasium / torch-pruning versions
    episodes.csv       one row per episode (rlprune.rl.recorder)
    best.json          best candidate so far, rewritten atomically after every episode
                       (single-network runs)
    checkpoints/       epNNNNNN/ (see rlprune.rl.checkpoint) and latest.json
    policy/            the policy artifact (rlprune.rl.policy), written at the end or on Ctrl-C
    sb3/               Stable-Baselines3 logs; a resumed session logs to sb3/resume-epNNNNNN/

Checkpoints are taken at update boundaries (:class:`~rlprune.rl.callbacks.CheckpointAtUpdates`).
A resumed run restores the latest one and drops the log rows after it: those episodes
run again, identically, so a resumed run produces the same ``episodes.csv`` as an
uninterrupted one with the same seed (apart from ``time/elapsed_s``).
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger, configure

from ..errors import RunError, sigterm_stops_like_ctrl_c
from ..files import atomic_write_json, atomic_write_text, safe_name
from ..reports.versions import software_versions
from .checkpoint import Snapshot, latest_checkpoint, read_checkpoint, write_checkpoint
from .recorder import logged_episodes

__all__ = [
    "check_latest_pointer",
    "check_more_episodes",
    "latest_snapshot",
    "learn_up_to",
    "open_run",
    "run_folder_name",
    "sb3_logger",
    "sigterm_stops_like_ctrl_c",
    "until_stopped",
    "write_run_checkpoint",
]


def run_folder_name(env: str, agent: str, seed: int) -> str:
    """``{env}__{agent}__{seed}__{time}``, CleanRL style; names that are not safe folder
    names (a preset's ``name: ../../x``) are made so (:func:`rlprune.files.safe_name`)."""
    return f"{safe_name(env)}__{safe_name(agent)}__{seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def open_run(
    run_dir: Path, command: str, write_config: Callable[[], None], *, resume: bool
) -> Snapshot | None:
    """Make the run folder and start the run in it.

    A resumed run reads its latest checkpoint back (``None`` before the first: the run
    starts again from the beginning). A new run writes its config file (``write_config``),
    ``command.txt`` and ``versions.json``, and clears what an earlier run in the folder
    left: its log, best candidate and checkpoints.

    Raises:
        RunError: the checkpoint of a resumed run is damaged.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        return latest_snapshot(run_dir)
    write_config()
    atomic_write_text(run_dir / "command.txt", command + "\n")
    atomic_write_json(run_dir / "versions.json", software_versions())
    for name in ("episodes.csv", "best.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return None


# --- checkpoints of a run --------------------------------------------------------------


def check_latest_pointer(run_dir: Path) -> None:
    """Refuse a ``checkpoints/latest.json`` that is damaged or names a missing checkpoint.

    Raises:
        RunError: saying how to repair the pointer.
    """
    pointer = run_dir / "checkpoints" / "latest.json"
    if latest_checkpoint(run_dir) is None and pointer.exists():
        raise RunError(
            f"{pointer} is damaged or names a missing checkpoint; point it at one of the "
            "epNNNNNN folders beside it, or delete it to resume from the start"
        )


def latest_snapshot(run_dir: Path) -> Snapshot | None:
    """The run's latest checkpoint, read back (``None`` before the first: the run starts
    again).

    Raises:
        RunError: the checkpoint is damaged.
    """
    checkpoint = latest_checkpoint(run_dir)
    return read_checkpoint(checkpoint) if checkpoint is not None else None


def write_run_checkpoint(run_dir: Path, snapshot: Snapshot, reason: str) -> Path:
    """Write ``snapshot`` as the run's latest checkpoint (see
    :func:`rlprune.rl.checkpoint.write_checkpoint`).

    Raises:
        RunError: the checkpoint could not be written; the previous one is intact.
    """
    root = run_dir / "checkpoints"
    name = f"ep{snapshot.episodes:06d}"
    try:
        return write_checkpoint(snapshot, root, reason=reason)
    except OSError as exc:
        previous = latest_checkpoint(run_dir)
        kept = previous.name if previous else "none"
        raise RunError(
            f"could not write checkpoint {name} in {root}: {exc.strerror or exc}; "
            f"the last good checkpoint ({kept}) is intact, resume from it with "
            f"`rlprune train --resume {run_dir}`"
        ) from None


# --- resuming -------------------------------------------------------------------------


def check_more_episodes(run_dir: Path, episodes: int | None) -> None:
    """Refuse an episode count below the episodes the run has logged (``None``: not given).

    Raises:
        RunError: a resumed run only continues.
    """
    done = logged_episodes(run_dir / "episodes.csv")
    if episodes is not None and episodes < done:
        raise RunError(
            f"--episodes {episodes} is fewer than the {done} episodes {run_dir} has done; a "
            f"resumed run only continues: give --episodes {done} or more, or drop --episodes"
        )


def sb3_logger(run_dir: Path, snapshot: Snapshot | None, formats: Sequence[str]) -> Logger:
    """Stable-Baselines3's logger, writing under ``run_dir/sb3``; a session resumed from
    ``snapshot`` writes to ``sb3/resume-epNNNNNN`` so the earlier sessions' logs are kept."""
    logs = run_dir / "sb3"
    if snapshot is not None:
        logs = logs / f"resume-ep{snapshot.episodes:06d}"
    return configure(str(logs), list(formats))


def learn_up_to(
    algorithm: BaseAlgorithm, total_steps: int, callback: BaseCallback, *, resumed: bool
) -> None:
    """``algorithm.learn`` until it has taken ``total_steps`` steps in all, so that a resumed
    run (whose step count the checkpoint restored) lines up with an uninterrupted one."""
    algorithm.learn(
        total_timesteps=total_steps - algorithm.num_timesteps,
        callback=callback,
        reset_num_timesteps=not resumed,
    )


# --- stopping -------------------------------------------------------------------------


def until_stopped(body: Callable[[], None]) -> int:
    """Run ``body`` until it returns or Ctrl-C / SIGTERM stops it, where it is.

    Returns the signal that stopped it (``signal.SIGINT``, ``signal.SIGTERM``), 0 when it
    ran to the end. The signal interrupts at once (an update or an evaluation included), so
    the run keeps the last update boundary it reached.
    """
    try:
        with sigterm_stops_like_ctrl_c():
            body()
    except KeyboardInterrupt as interrupt:
        return int(getattr(interrupt, "signum", signal.SIGINT))
    return 0
