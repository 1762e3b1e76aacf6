"""Pick a family run's checkpoint by how it plays networks outside its family.

A family policy keeps fitting its training family long after it stops transferring: the
checkpoints of ``rlprune train --env A,B,... --checkpoint-every N`` are each played once
(their own corrections, deterministic, probes + 1 evaluation) on networks that lie outside
both the family and the networks the policy will be judged on, and the one whose mean
validation accuracy there is furthest above the prior's is the pick. Scores are appended
to a JSON-lines file as they come, so an interrupted selection resumes without replaying
what it has scored.

:func:`pick_scale` chooses, the same way, the strength at which a policy (an ensemble of
such picks, typically) plays its corrections on networks outside its family.

This is how the bundled general policy was chosen (``experiments/train_general_policy.py``,
``experiments/select_checkpoint.py`` and ``experiments/bundle_policy.py`` share it). It sits
above :mod:`rlprune.search` because each network is played as a transfer benchmark plays it
(:func:`rlprune.search.benchmark.load_task`: with the policy's action bounds and reward).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .env.pruning_env import PruningEnv
from .env.rollout import PriorPlayer, at_strength, rollout
from .errors import ConfigError
from .files import file_digest
from .presets.loader import env_spec, load_env_config
from .rl.policy import POLICY_ENV_KEYS, LoadedPolicy, load_policy, save_policy
from .rl.transfer import policy_env
from .search.benchmark import load_task

__all__ = [
    "Boards",
    "Scored",
    "export_pick",
    "load_checkpoint",
    "pick_scale",
    "run_checkpoints",
    "run_targets",
    "score_runs",
]


@dataclass
class Scored:
    """One checkpoint's accuracies (%) and their mean gain over the prior (points)."""

    run: Path
    checkpoint: str
    targets: list[float]
    digest: str = ""
    accuracy: dict[tuple[str, float], float] = field(default_factory=dict)
    select: float = 0.0
    report: float | None = None

    def line(self) -> str:
        """One printable line: the checkpoint, its scores and every cell."""
        cells = " ".join(f"{n}@{t} {a:.2f}" for (n, t), a in self.accuracy.items())
        shown = f" report-prior {self.report:+.2f}" if self.report is not None else ""
        return f"{self.run} {self.checkpoint}: select-prior {self.select:+.2f}{shown} | {cells}"


def run_checkpoints(run: Path, episodes: tuple[int, int] | None = None) -> list[Path]:
    """The ``checkpoints/ep*`` folders of a run, in episode order (only those taken within
    ``episodes``, LOW and HIGH included, when given); a one-line error if none."""
    found = sorted(p for p in (run / "checkpoints").glob("ep*") if (p / "params.pt").is_file())
    if episodes is not None:
        found = [p for p in found if episodes[0] <= int(p.name[2:]) <= episodes[1]]
    if not found:
        raise ConfigError(
            f"run {str(run)!r} has no checkpoints/ep*/params.pt"
            + (f" within episodes {episodes[0]}:{episodes[1]}" if episodes else "")
            + "; give a folder made by `rlprune train` (it checkpoints every "
            "--checkpoint-every episodes)"
        )
    return found


def load_checkpoint(policy: LoadedPolicy, checkpoint: Path) -> None:
    """Put ``checkpoint``'s policy weights into ``policy`` (weights_only; eval mode)."""
    params = torch.load(checkpoint / "params.pt", map_location="cpu", weights_only=True)
    policy.network.load_state_dict(params["policy"])
    policy.network.set_training_mode(False)


def run_targets(run: Path, targets: Sequence[float]) -> list[float]:
    """``targets``, or only the run's own target for a run trained on one (none if that
    target is not among ``targets``)."""
    try:
        trained = json.loads((run / "family.json").read_text())["train"]["targets"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        raise ConfigError(
            f"run {str(run)!r} has no readable family.json; give a folder made by "
            "`rlprune train --env A,B,...`"
        ) from None
    if len(set(trained)) == 1:
        return [float(trained[0])] if float(trained[0]) in targets else []
    return [float(t) for t in targets]


class Boards:
    """One env (and its prior's accuracy, %) per network, target and policy settings, built
    on first use: the probes are the expensive part."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root  # env YAML files named by a relative path are looked up here
        self.envs: dict[tuple[str, float, str], tuple[PruningEnv, float]] = {}

    def get(self, policy: LoadedPolicy, name: str, target: float) -> tuple[PruningEnv, float]:
        """The env on which ``policy`` plays ``name`` at ``target``, and the prior's accuracy."""
        settings = {k: policy.metadata.get(k) for k in (*POLICY_ENV_KEYS, "feature_version")}
        key = (name, target, json.dumps(settings, sort_keys=True))
        if key not in self.envs:
            config = load_env_config(env_spec(name, self.root), {"target": target})
            env = policy_env(policy, load_task(config, str(policy.path)), config.env.target.low)
            self.envs[key] = (env, 100 * rollout(PriorPlayer(), env).accuracy)
        return self.envs[key]

    def gain(
        self,
        policy: LoadedPolicy,
        item: Scored,
        names: Sequence[str],
        targets: Sequence[float],
        scale: float = 1.0,
    ) -> float:
        """Play ``policy`` (its corrections at strength ``scale``) on every network and
        target; record each accuracy in ``item``; return the mean gain over the prior, in
        points."""
        player = at_strength(policy, scale)
        gains = []
        for name in names:
            for target in targets:
                env, prior = self.get(policy, name, target)
                accuracy = 100 * rollout(player, env).accuracy
                item.accuracy[(name, target)] = accuracy
                gains.append(accuracy - prior)
        return sum(gains) / len(gains)


def _key(item: Scored, select: Sequence[str], report: Sequence[str]) -> str:
    return json.dumps(
        [str(item.run), item.checkpoint, item.digest, list(select), list(report), item.targets]
    )


def _record(item: Scored, select: Sequence[str], report: Sequence[str]) -> dict[str, Any]:
    return {
        "key": _key(item, select, report),
        "accuracy": [[n, t, a] for (n, t), a in item.accuracy.items()],
        "select": item.select,
        "report": item.report,
    }


def _kept(results: Path | None) -> dict[str, dict[str, Any]]:
    if results is None or not results.is_file():
        return {}
    kept = {}
    for text in results.read_text().splitlines():
        try:
            record = json.loads(text)
            kept[record["key"]] = record
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by an interrupt: that checkpoint is scored again
    return kept


def score_runs(
    runs: Sequence[Path],
    select: Sequence[str],
    report: Sequence[str],
    targets: Sequence[float],
    *,
    boards: Boards | None = None,
    results: Path | None = None,
    on_scored: Callable[[Scored], None] | None = None,
    on_skipped: Callable[[Path], None] | None = None,
    episodes: tuple[int, int] | None = None,
) -> tuple[list[Scored], dict[Path, Scored]]:
    """Score every checkpoint of every run; return them all and each run's pick.

    A checkpoint's ``select`` score is its mean accuracy minus the prior's over ``select``
    networks and the run's targets (:func:`run_targets`); ``report`` the same over the
    ``report`` networks (``None`` when there are none). The pick is the best ``select``.
    With ``results``, each score is appended there as a JSON line and a checkpoint already
    there (same weights, networks and targets) is read back instead of played again.
    ``episodes`` keeps only the checkpoints taken within that range.
    """
    if not select:
        raise ConfigError("no networks to select on; give --select-on NET1,NET2,...")
    plans = [(run, run_checkpoints(run, episodes), run_targets(run, targets)) for run in runs]
    boards = boards or Boards()
    kept = _kept(results)
    scored: list[Scored] = []
    picks: dict[Path, Scored] = {}
    for run, checkpoints, own in plans:
        if not own:
            if on_skipped is not None:
                on_skipped(run)
            continue
        policy: LoadedPolicy | None = None
        for checkpoint in checkpoints:
            item = Scored(run, checkpoint.name, own, file_digest(checkpoint / "params.pt"))
            record = kept.get(_key(item, select, report))
            if record is not None:
                item.accuracy = {(n, float(t)): float(a) for n, t, a in record["accuracy"]}
                item.select, item.report = record["select"], record["report"]
            else:
                policy = policy or load_policy(run / "policy")
                load_checkpoint(policy, checkpoint)
                item.select = boards.gain(policy, item, select, own)
                if report:
                    item.report = boards.gain(policy, item, report, own)
                if results is not None:
                    with results.open("a") as handle:
                        handle.write(json.dumps(_record(item, select, report)) + "\n")
            scored.append(item)
            if run not in picks or item.select > picks[run].select:
                picks[run] = item
            if on_scored is not None:
                on_scored(item)
    return scored, picks


def export_pick(item: Scored, select: Sequence[str], out: Path) -> Path:
    """Write the picked checkpoint as a policy folder; its metadata names the checkpoint,
    the selection networks, the targets it was scored at and its score."""
    policy = load_policy(item.run / "policy")
    load_checkpoint(policy, item.run / "checkpoints" / item.checkpoint)
    skip = {"format", "feature_version", "features", "rlprune_version"}
    metadata = {k: v for k, v in policy.metadata.items() if k not in skip}
    metadata["selected"] = {
        "checkpoint": item.checkpoint,
        "select_on": list(select),
        "targets": item.targets,
        "select_minus_prior": round(item.select, 4),
    }
    return save_policy(policy.network, out, metadata, policy.metadata["feature_version"])


def pick_scale(
    policy: LoadedPolicy,
    select: Sequence[str],
    targets: Sequence[float],
    scales: Sequence[float],
    *,
    boards: Boards | None = None,
    on_scored: Callable[[Scored], None] | None = None,
) -> tuple[float, list[Scored]]:
    """The strength at which ``policy`` should play its corrections on networks outside its
    family, and every strength's score.

    Each of ``scales`` (0 is the prior alone, 1 the corrections in full) plays ``policy``
    once on every ``select`` network at every target; its score is the mean accuracy gain
    over the prior there (:meth:`Boards.gain`). The pick is the best score, the weaker
    strength on a tie, so a policy that does not beat its prior there gets 0.
    """
    if not select:
        raise ConfigError("no networks to select on; give --select-on NET1,NET2,...")
    if not scales or any(not 0 <= s <= 1 for s in scales):
        raise ConfigError(f"scales must lie in [0, 1], got {list(scales)}; e.g. 0,0.25,0.5,1")
    boards = boards or Boards()
    scored = []
    best = 0.0, 0.0  # (score, scale): the prior scores 0 by definition
    for scale in sorted(set(scales)):
        item = Scored(policy.path, f"scale {scale:g}", [float(t) for t in targets])
        item.select = boards.gain(policy, item, select, item.targets, scale=scale)
        scored.append(item)
        if item.select > best[0] + 1e-9:
            best = item.select, scale
        if on_scored is not None:
            on_scored(item)
    return best[1], scored
