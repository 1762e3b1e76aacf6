"""Small Stable-Baselines3 callbacks that both trainers compose with ``CallbackList``.

A trainer's callback (:func:`run_callback`) is::

    CallbackList([
        CheckpointAtUpdates(...),              # rollout start: snapshot, checkpoint when due
        StopAtEpisodes(recorder, N,            # every step until N episodes, then stop:
            CallbackList([
                *before,                       #   a family run's ObservationRanges
                RecordEpisodes(recorder, ...)  #   finished episodes to the logs and the hook
            ]),
        ),
    ])

A family run keeps the :class:`ObservationRanges` in its checkpoints and policy. Ctrl-C
and SIGTERM are not callbacks: :func:`rlprune.rl.run.until_stopped` stops a run where it
is, not at the next step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, EventCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv

from .checkpoint import Snapshot, capture
from .recorder import EpisodeLog
from .run import write_run_checkpoint

__all__ = [
    "CheckpointAtUpdates",
    "ObservationRanges",
    "RecordEpisodes",
    "StopAtEpisodes",
    "run_callback",
]


def run_callback(
    checkpoints: CheckpointAtUpdates,
    recorder: EpisodeLog,
    episodes: int,
    *,
    before: Sequence[BaseCallback] = (),
    on_episode: Callable[[], None] | None = None,
    learn_last_rollout: bool = True,
) -> CallbackList:
    """The callback of a training run: ``checkpoints`` at update boundaries and, at every
    step until ``recorder`` holds ``episodes`` episodes, the ``before`` callbacks, then the
    finished episodes recorded (see :class:`StopAtEpisodes` for ``learn_last_rollout``)."""
    steps = CallbackList([*before, RecordEpisodes(recorder, on_episode, limit=episodes)])
    stop = StopAtEpisodes(recorder, episodes, steps, learn_last_rollout=learn_last_rollout)
    return CallbackList([checkpoints, stop])


class RecordEpisodes(BaseCallback):
    """Hands every episode that ends at this step to the recorder (its log and SB3's), then
    calls ``on_episode``; with ``limit``, no more than that many episodes in all (several
    environments end their episodes at the same step)."""

    def __init__(
        self,
        recorder: EpisodeLog,
        on_episode: Callable[[], None] | None = None,
        *,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self.on_episode = on_episode
        self.limit = limit

    def _on_step(self) -> bool:
        for reward, done, info in zip(
            self.locals["rewards"], self.locals["dones"], self.locals["infos"], strict=True
        ):
            if not done or "accuracy" not in info:
                continue
            if self.limit is not None and self.recorder.episodes >= self.limit:
                break  # the run asked for no more: the extra environments' episodes go
            reward = float(info.get("reward", reward))  # the episode's, without shaping
            self.recorder.record(reward, info)
            self.recorder.log_episode(self.logger, reward, info)
            if self.on_episode is not None:
                self.on_episode()
        return True


class StopAtEpisodes(EventCallback):
    """Runs ``callback`` at every step until ``recorder`` holds ``episodes`` episodes, then
    stops training.

    With ``learn_last_rollout`` a rollout that ends with the step of the last episode is
    still learned from, so that the final checkpoint is the update boundary after it;
    otherwise, and for a partial rollout, training stops at that step.
    """

    def __init__(
        self,
        recorder: EpisodeLog,
        episodes: int,
        callback: BaseCallback,
        *,
        learn_last_rollout: bool = True,
    ) -> None:
        super().__init__(callback)
        self.recorder = recorder
        self.episodes = episodes
        self.learn_last_rollout = learn_last_rollout

    def _on_step(self) -> bool:
        if self.recorder.episodes >= self.episodes:
            return False  # the last update is done; this step starts an unneeded episode
        if not self._on_event():
            return False
        if self.recorder.episodes < self.episodes:
            return True
        return self.learn_last_rollout and self._rollout_ends_here()

    def _rollout_ends_here(self) -> bool:
        if isinstance(self.model, OnPolicyAlgorithm):
            return int(self.locals["n_steps"]) + 1 >= int(self.locals["n_rollout_steps"])
        return True  # off-policy agents here collect one episode per env per rollout


class CheckpointAtUpdates(BaseCallback):
    """Snapshots the run at every update boundary (the start of a rollout) and writes the
    snapshot as a checkpoint once ``every`` episodes or ``seconds`` seconds have passed
    since the last one, whichever comes first (0 turns that trigger off).

    ``extra_state`` adds to each snapshot's state; ``after_write`` runs after each
    checkpoint is written. :meth:`finish` writes the latest snapshot at the end of a run.
    """

    def __init__(
        self,
        run_dir: Path,
        vec_env: DummyVecEnv,
        recorder: EpisodeLog,
        *,
        every: int,
        seconds: float = 0.0,
        extra_state: Callable[[], dict[str, Any]] | None = None,
        after_write: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.vec_env = vec_env
        self.recorder = recorder
        self.every = every
        self.seconds = seconds
        self.extra_state = extra_state
        self.after_write = after_write
        self.snapshot: Snapshot | None = None
        """The run at the latest update boundary."""
        self.written = recorder.episodes
        """Episodes covered by the last checkpoint written (or resumed from)."""
        self.written_at = time.monotonic()

    def _on_rollout_start(self) -> None:
        self.snapshot = capture(
            self.model,
            self.vec_env,
            episodes=self.recorder.episodes,
            elapsed_s=self.recorder.elapsed(),
            best=self.recorder.best_record(),
        )
        if self.extra_state is not None:
            self.snapshot.state.update(self.extra_state())
        reason = self._due()
        if reason is not None:
            self.write(reason)

    def _on_step(self) -> bool:
        return True

    def _due(self) -> str | None:
        assert self.snapshot is not None
        episodes = self.snapshot.episodes
        if episodes <= self.written:
            return None
        if self.every and episodes // self.every > self.written // self.every:
            return "episodes"
        if self.seconds and time.monotonic() - self.written_at >= self.seconds:
            return "time"
        return None

    def write(self, reason: str) -> None:
        """Write the latest snapshot as a checkpoint (``reason``: ``episodes``, ``time``,
        ``end``, ``interrupt``)."""
        assert self.snapshot is not None
        write_run_checkpoint(self.run_dir, self.snapshot, reason)
        self.written = self.snapshot.episodes
        self.written_at = time.monotonic()
        if self.after_write is not None:
            self.after_write()

    def pending(self) -> bool:
        """Whether the latest snapshot covers episodes no checkpoint has."""
        return self.snapshot is not None and self.snapshot.episodes > self.written

    def finish(self, reason: str) -> None:
        """Write the latest snapshot if no checkpoint covers it yet (the run ends, or is
        interrupted: the update boundary it reached last)."""
        if self.pending():
            self.write(reason)


class ObservationRanges(BaseCallback):
    """Widens, at every step, the range each observation feature has taken.

    The observation after a finished episode is the next episode's first, so every
    observation the agent acted on is seen. ``features`` names the columns.
    """

    def __init__(self, features: Sequence[str]) -> None:
        super().__init__()
        self.features = tuple(features)
        self.low = np.full(len(self.features), np.inf)
        self.high = np.full(len(self.features), -np.inf)

    def _on_step(self) -> bool:
        self.observe(self.locals["new_obs"])
        return True

    def observe(self, observations: Any) -> None:
        """Widen the ranges to take in ``observations`` (one row per observation)."""
        rows = np.asarray(observations, dtype=np.float64).reshape(-1, len(self.low))
        self.low = np.minimum(self.low, rows.min(axis=0))
        self.high = np.maximum(self.high, rows.max(axis=0))

    def widen(self, ranges: dict[str, Any]) -> None:
        """Widen the ranges to take in ``{feature: [low, high]}`` (a policy's
        ``feature_ranges``; features not observed here are ignored)."""
        for j, name in enumerate(self.features):
            if name in ranges:
                low, high = ranges[name]
                self.low[j] = min(self.low[j], float(low))
                self.high[j] = max(self.high[j], float(high))

    def to_state(self) -> dict[str, list[float | None]]:
        """The ranges as plain JSON (``None`` for a feature not seen yet)."""
        return {
            "low": [None if not np.isfinite(v) else float(v) for v in self.low],
            "high": [None if not np.isfinite(v) else float(v) for v in self.high],
        }

    def load_state(self, saved: dict[str, Any]) -> None:
        """Inverse of :meth:`to_state`."""
        self.low = np.array([np.inf if v is None else v for v in saved["low"]])
        self.high = np.array([-np.inf if v is None else v for v in saved["high"]])

    def feature_ranges(self) -> dict[str, list[float]]:
        """``{feature: [low, high]}`` of every feature seen, rounded to 1e-6."""
        return {
            name: [round(float(lo), 6), round(float(hi), 6)]
            for name, lo, hi in zip(self.features, self.low, self.high, strict=True)
            if np.isfinite(lo)
        }
