"""What a run records per episode: ``episodes.csv``, the run's clock, the best candidate.

:class:`EpisodeLog` is the part both trainers share (a log that resumes after the rows a
checkpoint covers, flushed row by row); :class:`RunRecorder` records a single-network run
(with its best candidate, ``best.json``), :class:`FamilyRecorder` a family run (member,
target and reward over the prior; rewards of different networks do not compare, so no
best). :class:`~rlprune.rl.callbacks.RecordEpisodes` hands them the finished episodes.
"""

from __future__ import annotations

import csv
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import Logger, TensorBoardOutputFormat

from ..errors import ConfigError, RunError
from ..evaluation.candidates import Candidate
from ..evaluation.task import PruningTask
from ..files import atomic_write_bytes, atomic_write_json

__all__ = [
    "CSV_FIELDS",
    "FAMILY_LOG_FIELDS",
    "BestCandidate",
    "EpisodeLog",
    "FamilyRecorder",
    "RunRecorder",
    "log_per_episode",
    "logged_episodes",
    "truncate_log",
]

CSV_FIELDS = (
    "episode",
    "episode/reward",
    "prune/accuracy",
    "prune/macs_ratio",
    "prune/params_ratio",
    "prune/target",
    "best/reward",
    "best/accuracy",
    "best/macs_ratio",
    "time/elapsed_s",
)
"""The columns of a single-network run's ``episodes.csv``, before one
``best/keep_ratio/{unit}`` per unit."""

FAMILY_LOG_FIELDS = (
    "episode",
    "member",
    "target",
    "accuracy",
    "macs_ratio",
    "reward",
    "prior_reward",
    "time/elapsed_s",
)
"""The columns of a family run's ``episodes.csv``."""


def truncate_log(path: Path, episodes: int, fieldnames: tuple[str, ...]) -> None:
    """Keep the header and the first ``episodes`` rows of ``episodes.csv`` (those a
    checkpoint covers), byte for byte.

    Raises:
        RunError: the header is not this run's, or a kept row is missing or damaged.
    """
    lines = path.read_bytes().splitlines(keepends=True) if path.is_file() else []
    header = next(csv.reader([lines[0].decode("utf-8", "replace")]), []) if lines else []
    if tuple(header) != fieldnames:
        raise RunError(
            f"{path} does not have this run's columns (another model's log?); "
            "restore the run folder's own episodes.csv or start a new run"
        )
    for number in range(1, episodes + 1):
        row = lines[number].decode("utf-8", "replace") if number < len(lines) else ""
        first = next(csv.reader([row]), [""])[0] if row.strip() else "(missing)"
        if first != str(number) or not row.endswith("\n"):
            raise RunError(
                f"{path} is damaged: row {number} should be episode {number} (checkpoint "
                f"ep{episodes:06d} covers {episodes}), found {first!r}; restore the file "
                "or start a new run"
            )
    atomic_write_bytes(path, b"".join(lines[: episodes + 1]))


def logged_episodes(path: Path) -> int:
    """Rows of ``episodes.csv`` numbered 1, 2, ... from the top (0 if there is none)."""
    if not path.is_file():
        return 0
    count = 0
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        next(rows, None)
        for row in rows:
            if not row or row[0] != str(count + 1):
                break
            count += 1
    return count


class EpisodeLog(ABC):
    """A run's ``episodes.csv``, one row per finished episode, flushed as it is written, and
    the run's clock.

    ``start_episode`` 0 starts the log afresh; otherwise its first ``start_episode`` rows
    (those a checkpoint covers) are kept, checked by :func:`truncate_log`, and rows are
    appended after them. ``elapsed_s`` is the time the run had already taken (the
    ``time/elapsed_s`` column continues from it).
    """

    def __init__(
        self,
        path: Path,
        fieldnames: Sequence[str],
        start_episode: int = 0,
        elapsed_s: float = 0.0,
    ) -> None:
        self.episodes = start_episode
        """Episodes finished, over every session."""
        self.started = time.perf_counter() - elapsed_s
        if start_episode:
            truncate_log(path, start_episode, tuple(fieldnames))
        self._handle = path.open("a" if start_episode else "w", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=fieldnames)
        if not start_episode:
            self._writer.writeheader()
            self._handle.flush()

    def elapsed(self) -> float:
        """Seconds the run has taken, over every session."""
        return time.perf_counter() - self.started

    @abstractmethod
    def record(self, reward: float, info: dict[str, Any]) -> None:
        """Log one finished episode (``reward`` without shaping, ``info`` its last step's)."""

    @abstractmethod
    def log_episode(self, logger: Logger, reward: float, info: dict[str, Any]) -> None:
        """Record the episode in Stable-Baselines3's logger too (written at each update)."""

    def best_record(self) -> dict[str, Any] | None:
        """The best candidate so far as a checkpoint keeps it (``None``: none, or no best)."""
        return None

    def write_row(self, row: Mapping[str, Any]) -> None:
        """Append ``row`` to the log and flush it."""
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        """Close the episode log."""
        self._handle.close()


@dataclass(frozen=True)
class BestCandidate:
    """The best pruned network a run has evaluated (by reward)."""

    episode: int
    reward: float
    target: float
    candidate: Candidate
    units: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """``best.json``'s content: the candidate record plus episode, reward, target, units."""
        return {
            "episode": self.episode,
            "reward": self.reward,
            "target": self.target,
            "units": list(self.units),
            **self.candidate.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BestCandidate:
        """Inverse of :meth:`to_dict`.

        Raises:
            ConfigError: a field is missing or has the wrong type.
        """
        try:
            return cls(
                episode=int(data["episode"]),
                reward=float(data["reward"]),
                target=float(data["target"]),
                candidate=Candidate.from_dict(data),
                units=tuple(str(u) for u in data["units"]),
            )
        except KeyError as exc:
            raise ConfigError(f"not a best-candidate record: missing field {exc}") from None


class RunRecorder(EpisodeLog):
    """Writes a single-network run's per-episode log and its best candidate (``best.json``).

    ``start_episode``, ``best`` and ``elapsed_s`` say where a resumed run's checkpoint
    left it (see :class:`EpisodeLog`).
    """

    def __init__(
        self,
        run_dir: Path,
        task: PruningTask,
        start_episode: int = 0,
        best: BestCandidate | None = None,
        elapsed_s: float = 0.0,
    ) -> None:
        self.run_dir = run_dir
        self.units = tuple(u.name for u in task.analysis.units)
        self.best = best
        self.task = task
        self.history: list[Candidate] = []
        """Candidates evaluated by this session's episodes, in order."""
        self._keep_fields = tuple(f"best/keep_ratio/{unit}" for unit in self.units)
        super().__init__(run_dir / "episodes.csv", self.fieldnames, start_episode, elapsed_s)

    @property
    def fieldnames(self) -> tuple[str, ...]:
        """The columns of ``episodes.csv``."""
        return CSV_FIELDS + self._keep_fields

    def record(self, reward: float, info: dict[str, Any]) -> None:
        """Log one finished episode and update ``best.json``."""
        self.episodes += 1
        candidate = Candidate.from_dict(info)
        self.history.append(candidate)
        if self.best is None or reward > self.best.reward:
            self.best = BestCandidate(
                episode=self.episodes,
                reward=float(reward),
                target=float(info["target"]),
                candidate=candidate,
                units=self.units,
            )
        self.write_row(
            {
                "episode": self.episodes,
                "episode/reward": f"{reward:.6f}",
                "prune/accuracy": f"{info['accuracy']:.6f}",
                "prune/macs_ratio": f"{info['macs_ratio']:.6f}",
                "prune/params_ratio": f"{info['params_ratio']:.6f}",
                "prune/target": f"{info['target']:.6f}",
                "best/reward": f"{self.best.reward:.6f}",
                "best/accuracy": f"{self.best.candidate.accuracy:.6f}",
                "best/macs_ratio": f"{self.best.candidate.macs_ratio:.6f}",
                "time/elapsed_s": f"{self.elapsed():.3f}",
                **{
                    key: f"{ratio:.4f}"
                    for key, ratio in zip(
                        self._keep_fields, self.best.candidate.keep_ratios, strict=True
                    )
                },
            }
        )
        self.write_best()

    def log_episode(self, logger: Logger, reward: float, info: dict[str, Any]) -> None:
        """The episode's reward, accuracy and MACs (TensorBoard: one point per episode, at
        step = episode; ``progress.csv``: means per update) and the best so far."""
        log_per_episode(
            logger,
            self.episodes,
            {
                "episode/reward": float(reward),
                "prune/accuracy": float(info["accuracy"]),
                "prune/macs_ratio": float(info["macs_ratio"]),
            },
        )
        best = self.best
        if best is not None:
            logger.record("best/accuracy", best.candidate.accuracy)
            logger.record("best/macs_ratio", best.candidate.macs_ratio)
            for unit, ratio in zip(best.units, best.candidate.keep_ratios, strict=True):
                logger.record(f"best/keep_ratio/{unit}", ratio)

    def best_record(self) -> dict[str, Any] | None:
        """``best.json``'s content (``None`` before the first episode)."""
        return self.best.to_dict() if self.best else None

    def write_best(self) -> None:
        """Rewrite ``best.json`` atomically (remove it while there is no best)."""
        if self.best is not None:
            atomic_write_json(self.run_dir / "best.json", self.best.to_dict())
        else:
            (self.run_dir / "best.json").unlink(missing_ok=True)


def log_per_episode(logger: Logger, episode: int, values: Mapping[str, float]) -> None:
    """One TensorBoard point per episode for each of ``values`` (step: the episode number),
    and their means per update for the logger's other outputs (``progress.csv``). SB3's
    logger writes only at update boundaries, so TensorBoard's writer is used directly."""
    for key, value in values.items():
        logger.record_mean(key, value, exclude="tensorboard")
    for output in logger.output_formats:
        if isinstance(output, TensorBoardOutputFormat):
            for key, value in values.items():
                output.writer.add_scalar(key, value, episode)


class FamilyRecorder(EpisodeLog):
    """Writes a family run's per-episode log (:data:`FAMILY_LOG_FIELDS`) and keeps its rows,
    those a resumed run's checkpoint covers included, for the summary at the end."""

    def __init__(self, run_dir: Path, start_episode: int = 0, elapsed_s: float = 0.0) -> None:
        log = run_dir / "episodes.csv"
        super().__init__(log, FAMILY_LOG_FIELDS, start_episode, elapsed_s)
        self.rows: list[dict[str, Any]] = []
        """Every episode's row, in order (``reward`` as a float)."""
        if start_episode:
            with log.open(newline="") as handle:
                self.rows = [
                    {**row, "reward": float(row["reward"])}
                    for row in list(csv.DictReader(handle))[:start_episode]
                ]

    def record(self, reward: float, info: dict[str, Any]) -> None:
        """Log one finished episode of a :class:`~rlprune.rl.family.FamilyEnv`."""
        self.episodes += 1
        row = {
            "episode": self.episodes,
            "member": info["member"],
            "target": round(float(info["target"]), 6),
            "accuracy": float(info["accuracy"]),
            "macs_ratio": float(info["macs_ratio"]),
            "reward": float(reward),
            "prior_reward": float(info["prior_reward"]),
            "time/elapsed_s": round(self.elapsed(), 3),
        }
        self.rows.append(row)
        self.write_row(row)

    def log_episode(self, logger: Logger, reward: float, info: dict[str, Any]) -> None:
        """The episode's reward over the prior (TensorBoard: per episode; CSV: mean per update)."""
        log_per_episode(logger, self.episodes, {"episode/reward_over_prior": float(reward)})
