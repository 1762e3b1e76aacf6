"""The Gymnasium environment: one step per prunable unit, one pruned network per episode."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch_pruning as tp

from ..errors import ResetNeeded
from ..evaluation.candidates import Candidate, within_budget
from ..evaluation.task import PruningTask
from ..mdp.features import (
    COLUMN as C,
)
from ..mdp.features import (
    IMPORTANCE_COLUMNS,
    PROBE_COLUMNS,
    action_space,
    action_to_keep,
    features_for,
    observation_space,
)
from ..mdp.rewards import Outcome, get_reward
from ..mdp.settings import EnvConfig
from ..presets.loader import load_agent_values, load_env_config
from ..presets.tasks import load_task
from ..priors import (
    SENSITIVITY_RATIOS,
    curve_arrays,
    group_scores,
    importance_statistics,
    low_fidelity,
    prior_channels,
    sensitivity_curves,
    top_up,
)
from ..pruning.macs import channel_bounds

__all__ = ["PruningEnv"]


class _RenderModeError(TypeError, ValueError):
    """An unsupported ``render_mode``: a ``ValueError``, and a ``TypeError`` too because
    SB3's ``make_vec_env`` asks every env for ``rgb_array`` and falls back to no render mode
    only on ``TypeError``."""


def _env_config(
    preset: str | os.PathLike[str],
    *,
    task: PruningTask | None,
    config: EnvConfig | None,
    model: str | None,
    weights: str | None,
    dataset: str | None,
    target: float | tuple[float, float] | None,
    reward: str | None,
    fill_budget: bool | None,
    agent: str | os.PathLike[str] | None,
) -> EnvConfig:
    """The EnvConfig the env's arguments name, with agent-preset settings and overrides."""
    if task is not None:
        if any(v is not None for v in (model, weights, dataset)):
            raise TypeError("give either task or model/weights/dataset, not both")
        config = config or EnvConfig(task.config)
    elif config is None:
        config = load_env_config(preset, {"model": model, "weights": weights, "dataset": dataset})
    overrides = {
        k: v
        for k, v in {"target": target, "reward": reward, "fill_budget": fill_budget}.items()
        if v is not None
    }
    if agent is not None:
        # the agent preset's env: settings (what it observes, how its actions map),
        # as `rlprune train --agent` applies them
        _, values = load_agent_values(agent, config.name)
        overrides = {**dict(values.get("env") or {}), **overrides}
    return config.derive(overrides)


class PruningEnv(gym.Env[np.ndarray, np.ndarray]):
    """Choose the keep-ratio of each prunable unit of a trained network (AMC-style).

    ## Description

    The network is analysed once into *units*: torch-pruning dependency groups,
    whose channels must be removed together (a conv and its BatchNorm, every conv
    feeding one residual add, a depthwise conv and the conv before it). The
    classifier's output and ignored layers are never pruned. An episode visits the
    units in forward order; at each step the agent picks the fraction of the
    unit's channels to keep. After the last unit the network is physically pruned
    (lowest-importance channels removed, L1 by default), its BatchNorm statistics
    are recalibrated on a few training batches, and it is scored on the
    validation split.

    ## Action Space

    `Box(-1, 1, (1,), float32)`. With `action_mode: absolute` (the default) it maps
    linearly to a keep-ratio in `[min_keep, max_keep]`; with `action_mode: residual`
    it is a correction to a prior allocation (`prior`: `uniform`, `magnitude` or
    `sensitivity`, computed once per target): keep = prior keep + `residual_scale` x
    action, clipped to `[min_keep, max_keep]`, so action 0 plays the prior. With
    `anchor: best` the correction applies instead to the best configuration this env
    has scored at the episode's target (the prior until one beats it), so the policy
    searches around the incumbent. The
    keep-ratio is rounded to a whole channel count (a multiple of `round_to` if set). With `budget_clipping` (the default), the count is then
    clipped to AMC's bound: no more than lets the remaining units, at `min_keep`,
    still meet the MACs target; with `fill_budget`, no less than lets the
    remaining units, at `max_keep`, still use it. The measured MACs of every
    pruned model are then at most `target` times the original.

    ## Observation Space

    `Box(0, 1, (12,), float32)` with `features: 1` (the default), `Box(0, 1, (23,),
    float32)` with `features: 2`, `Box(0, 1, (25,), float32)` with `features: 3`; the same
    for every network. Set 1:

    | index | feature          | meaning                                                 | min | max |
    |-------|------------------|---------------------------------------------------------|-----|-----|
    | 0     | position         | unit index / number of units                            | 0   | 1   |
    | 1     | log_in_channels  | log2(input channels of the unit's first layer) / 16     | 0   | 1   |
    | 2     | log_out_channels | log2(channels of the unit) / 16                         | 0   | 1   |
    | 3     | kernel           | kernel size / 8                                         | 0   | 1   |
    | 4     | stride           | stride / 4                                              | 0   | 1   |
    | 5     | log_input_size   | log2(input height x width) / 24                         | 0   | 1   |
    | 6     | depthwise        | 1 if the unit holds a depthwise conv                    | 0   | 1   |
    | 7     | macs_share       | the unit's share of the original MACs                   | 0   | 1   |
    | 8     | macs_removed     | fraction of the original MACs removed by earlier units  | 0   | 1   |
    | 9     | macs_remaining   | share of the original MACs in later units               | 0   | 1   |
    | 10    | previous_keep    | keep-ratio chosen at the previous step (1 at the first) | 0   | 1   |
    | 11    | target           | fraction of the original MACs to keep                   | 0   | 1   |

    Set 2 adds what the heuristics know and what a residual policy needs. The probes
    prune the unit alone to 25/50/75 % of its channels and score it on `probe_images`
    validation images after BN recalibration: units x 3 low-fidelity evaluations, each
    charged `probe_images / val_size` of a full evaluation, once per search (cached on
    the task). The importance statistics need no evaluation.

    | index | feature        | meaning                                                       | min | max |
    |-------|----------------|---------------------------------------------------------------|-----|-----|
    | 12    | probe_drop_25  | accuracy lost (relative) with the unit alone at 25 % keep     | 0   | 1   |
    | 13    | probe_drop_50  | the same at 50 %                                              | 0   | 1   |
    | 14    | probe_drop_75  | the same at 75 %                                              | 0   | 1   |
    | 15    | l1_gini        | Gini coefficient of the channels' group L1 norms              | 0   | 1   |
    | 16    | l1_weak_half   | share of the L1 mass in the weakest half of the channels      | 0   | 1   |
    | 17    | bn_gini        | Gini coefficient of the BatchNorm scales (0 without BN)       | 0   | 1   |
    | 18    | bn_weak_half   | share of the BN-scale mass in the weakest half (0.5 w/o BN)   | 0   | 1   |
    | 19    | params_share   | the unit's share of the original parameters                   | 0   | 1   |
    | 20    | log_coupling   | log2(1 + layers coupled in the unit) / 8                      | 0   | 1   |
    | 21    | budget_left    | MACs still to remove / prunable MACs in this and later units  | 0   | 1   |
    | 22    | prior_keep     | the keep-ratio corrections apply to (prior or anchor) here    | 0   | 1   |

    Set 3 (`features: 3`, `Box(0, 1, (25,), float32)`) appends what a transformer's units
    need said; a head unit's other columns read as a linear layer's on a token sequence
    (input size = tokens, kernel and stride 1):

    | index | feature          | meaning                                                   | min | max |
    |-------|------------------|-----------------------------------------------------------|-----|-----|
    | 23    | attention        | 1 if the unit is an attention's heads (kept whole)        | 0   | 1   |
    | 24    | log_channel_step | log2(channels that go together: head width, groups) / 8   | 0   | 1   |

    `masked: [name, ...]` holds those columns at 0 in every observation: a policy trained so
    cannot use them, and plays the same way wherever they differ (e.g. the absolute sizes).

    ## Rewards

    0 at every step but the last. At the last, `rlprune.mdp.rewards.REWARDS[reward]` of the
    pruned network: `acc` (default; validation accuracy, AMC's
    resource-constrained reward), `acc_log_flops` (-error x log MACs, AMC's
    R_FLOPs) or `acc_budget_penalty` (accuracy minus twice the relative overshoot
    of the target, for `budget_clipping=False`).

    With `shaping: probes`, potential-based shaping (Ng et al. 1999) with potential
    Phi = minus the accuracy the sensitivity probes predict the units decided so far
    cost (each unit's drop alone, interpolated at its channel count, summed; 0 at the
    terminal state): a step that decides unit t is rewarded -drop_t, and the last step
    gets the sum of the earlier drops back on top of the episode's reward. Every
    episode's return is unchanged, so is the best policy; what changes is when the
    agent hears about a costly choice (with `gae_lambda` < 1, at the step it made it).

    ## Starting State

    The first unit, nothing pruned. The target is the preset's, or drawn
    uniformly from its `[low, high]` range with `self.np_random`, or given as
    `reset(options={"target": t})`.

    ## Episode End

    `terminated=True` after the last unit; never truncated. The final `info`
    holds the candidate record (:meth:`rlprune.evaluation.candidates.Candidate.to_dict`:
    `channels`, `keep_ratios`, `accuracy`, `macs`, `params`, `macs_ratio`,
    `params_ratio`), `target` and `reward` (the episode's reward, without shaping).
    Candidates are cached by channel configuration, so a repeated one costs nothing.

    ## Arguments

    `preset` (bundled name or YAML path, default `digits-cnn`) and optional
    overrides `model` (zoo name, `"pkg.module:factory"` or
    `"path/file.py:factory"`), `weights`, `dataset`, `target`, `reward`,
    `fill_budget`; or a ready `task` (:class:`rlprune.evaluation.task.PruningTask`),
    optionally with a `config` (:class:`rlprune.mdp.settings.EnvConfig`) for the env's
    own settings (features, action mode, reward, target) over the task's.
    `agent` (a bundled agent preset name such as `"ppo"`, or a YAML path) applies that
    preset's `env:` settings, as `rlprune train --agent` does: with `agent="ppo"` the env
    observes feature set 2 and takes residual corrections to the sensitivity prior.
    `render_mode` is `None`, `"ansi"` (`render()` returns the units decided so far, their
    keep-ratios and channels, and the MACs so far or the pruned network's score, as text)
    or `"human"` (the same text, printed), or `"rgb_array"` (an image: one bar per unit, its
    keep-ratio so far, grey for units not decided yet; what video recorders ask for, and
    what SB3's `make_vec_env` asks every env for).

    ```python
    import gymnasium, rlprune
    env = gymnasium.make("rlprune/LayerPrune-v0", preset="digits-cnn", target=0.5)
    ```

    ## Version History

    * v0: initial version (feature set 1); feature set 2 and the residual action mode
      are opt-in (`features: 2`, `action_mode: residual`), set 1 policies still run;
      `anchor: best` is opt-in (the default `prior` behaves as before); feature set 3
      (attention heads) is opt-in, its columns appended after set 2's.
    """

    # render_fps: Gymnasium's checker asks for one; text needs no frame rate
    metadata: dict[str, Any] = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        preset: str | os.PathLike[str] = "digits-cnn",
        *,
        task: PruningTask | None = None,
        config: EnvConfig | None = None,
        model: str | None = None,
        weights: str | None = None,
        dataset: str | None = None,
        target: float | tuple[float, float] | None = None,
        reward: str | None = None,
        fill_budget: bool | None = None,
        agent: str | os.PathLike[str] | None = None,
        render_mode: str | None = None,
    ) -> None:
        self._check_render_mode(render_mode)
        self.render_mode = render_mode
        config = _env_config(
            preset,
            task=task,
            config=config,
            model=model,
            weights=weights,
            dataset=dataset,
            target=target,
            reward=reward,
            fill_budget=fill_budget,
            agent=agent,
        )
        self.config = config
        self._reward_fn = get_reward(config.env.reward)
        if task is None:
            task = load_task(config)
        else:
            task.check_target(config.env.target.low)
        self.task = task
        analysis = task.analysis
        self.units = analysis.units
        self._full = analysis.channels
        self._total_cost = task.cost_total
        self.features = features_for(config.env.features)
        self._static = self._static_features()
        self._masked = [C[name] for name in config.env.masked]
        """Columns held at 0 (``env.masked``): features the policy is not to use."""

        self.action_space = action_space()
        self.observation_space = observation_space(config.env.features)

        self._step = -1
        self._target = config.env.target.low
        self._chosen = np.array(task.max_channels, dtype=np.int64)
        self._anchors: dict[float, tuple[float, np.ndarray]] = {}
        """With ``anchor: best``: per target, the best in-budget accuracy this env has
        scored and its keep-ratios."""
        self._prior_keep = self._prior(self._target)
        self.last_candidate: Candidate | None = None
        self._drops = self._probe_drops() if config.env.shaping == "probes" else None
        self._charged = 0.0
        """With shaping: the predicted drop the units decided so far were charged."""

    def _check_render_mode(self, render_mode: str | None) -> None:
        """Refuse a render mode this env does not have, before any heavy loading."""
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise _RenderModeError(
                f"render_mode {render_mode!r} is not one of {self.metadata['render_modes']}"
            )

    @property
    def current_unit(self) -> int:
        """Index of the unit the next action decides (-1 before reset)."""
        return self._step

    @property
    def prior_keep(self) -> np.ndarray:
        """The prior allocation's keep-ratio per unit for this episode's target (ones when
        neither the residual action mode nor feature set 2 uses a prior)."""
        return self._prior_keep

    def anchor_state(self) -> list[list[float]]:
        """What ``anchor: best`` remembers, as ``[target, accuracy, *keep_ratios]`` rows
        (a checkpoint saves it so a resumed run continues from the same anchors)."""
        return [[t, acc, *keep.tolist()] for t, (acc, keep) in self._anchors.items()]

    def set_anchor_state(self, rows: list[list[float]]) -> None:
        """Restore :meth:`anchor_state` (before the next :meth:`reset`)."""
        anchors = {}
        for row in rows:
            keep = np.asarray(row[2:], dtype=np.float64)
            if len(keep) != len(self.units):
                raise ValueError(f"anchor has {len(keep)} keep-ratios for {len(self.units)} units")
            anchors[float(row[0])] = (float(row[1]), keep)
        self._anchors = anchors

    def _prior(self, target: float) -> np.ndarray:
        if self.config.env.action_mode != "residual" and self.config.env.features < 2:
            return np.ones(len(self.units))
        if self.config.env.anchor == "best" and target in self._anchors:
            return np.array(self._anchors[target][1], dtype=np.float64)
        channels = prior_channels(
            self.task, target, self.config.env.prior, self.config.task.probe_images
        )
        keep: np.ndarray = np.asarray(channels, dtype=np.float64) / self._full
        return keep

    def _probe_drops(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per unit: channel counts and the accuracy lost with the unit alone pruned to
        them (the probes' curves, shared with feature set 2 and the prior; charged once)."""
        images = self.config.task.probe_images
        curves = sensitivity_curves(self.task, SENSITIVITY_RATIOS, images)
        xs, ys = curve_arrays(curves, monotone=low_fidelity(self.task, images))
        return [(x, y[-1] - y) for x, y in zip(xs, ys, strict=True)]

    def _shaping(self, unit: int) -> float:
        """The shaping reward for deciding ``unit``: minus its predicted drop (0 without)."""
        if self._drops is None:
            return 0.0
        counts, drops = self._drops[unit]
        drop = max(float(np.interp(self._chosen[unit], counts, drops)), 0.0)
        self._charged += drop
        return -drop

    # --- features -----------------------------------------------------------------

    def _static_features(self) -> np.ndarray:
        n = len(self.units)
        rows = np.zeros((n, len(self.features)), dtype=np.float64)
        shares = self.task.unit_shares
        for i, u in enumerate(self.units):
            rows[i, C["position"]] = i / n
            rows[i, C["log_in_channels"]] = np.log2(max(u.in_channels, 1)) / 16
            rows[i, C["log_out_channels"]] = np.log2(max(u.out_channels, 1)) / 16
            rows[i, C["kernel"]] = u.kernel / 8
            rows[i, C["stride"]] = u.stride / 4
            rows[i, C["log_input_size"]] = np.log2(max(u.input_hw[0] * u.input_hw[1], 1)) / 24
            rows[i, C["depthwise"]] = float(u.kind == "depthwise")
            rows[i, C["macs_share"]] = shares[i]
            rows[i, C["macs_remaining"]] = shares[i + 1 :].sum()
        if self.config.env.features >= 2:
            self._v2_static_features(rows)
        if self.config.env.features >= 3:
            for i, u in enumerate(self.units):
                rows[i, C["attention"]] = float(u.kind == "attention")
                rows[i, C["log_channel_step"]] = np.log2(max(u.groups, 1)) / 8
        return rows

    def _v2_static_features(self, rows: np.ndarray) -> None:
        """The static columns of feature set 2 (the probes are charged evaluations)."""
        task = self.task
        curves = sensitivity_curves(task, SENSITIVITY_RATIOS, self.config.task.probe_images)
        stats = task.memo.get("importance_statistics")
        if stats is None:  # a property of the model: computed once per search, not per env
            l1 = group_scores(task, tp.importance.GroupMagnitudeImportance(p=1, normalizer=None))
            bn = group_scores(task, tp.importance.BNScaleImportance(normalizer=None))
            stats = [
                (*importance_statistics(a), *importance_statistics(b))
                for a, b in zip(l1, bn, strict=True)
            ]
            task.memo["importance_statistics"] = stats
        params = float(task.analysis.params)
        for i, u in enumerate(self.units):
            base = curves[i][0][1]
            for column, (_, acc) in zip(PROBE_COLUMNS, curves[i][1:4], strict=True):
                rows[i, C[column]] = (base - acc) / base if base > 0 else 0.0
            rows[i, [C[c] for c in IMPORTANCE_COLUMNS]] = stats[i]  # type: ignore[index]
            rows[i, C["params_share"]] = u.params / params
            rows[i, C["log_coupling"]] = np.log2(1 + len(u.modules)) / 8

    def _observation(self) -> np.ndarray:
        t = self._step
        if t >= len(self.units):
            return np.zeros(len(self.features), dtype=np.float32)
        obs = self._static[t].copy()
        trial = self._full.astype(np.float64)
        trial[:t] = self._chosen[:t]
        obs[C["macs_removed"]] = 1.0 - self.task.cost_model.macs(trial) / self._total_cost
        obs[C["previous_keep"]] = self._chosen[t - 1] / self._full[t - 1] if t > 0 else 1.0
        obs[C["target"]] = self._target
        if self.config.env.features >= 2:
            removed = self._total_cost - self.task.cost_model.macs(trial)
            to_remove = (1.0 - self._target) * self._total_cost - removed
            prunable = self._static[t:, C["macs_share"]].sum() * self._total_cost
            obs[C["budget_left"]] = max(to_remove, 0.0) / prunable if prunable > 0 else 0.0
            obs[C["prior_keep"]] = self._prior_keep[t]
        obs[self._masked] = 0.0
        observation: np.ndarray = np.clip(obs, 0.0, 1.0).astype(np.float32)
        return observation

    # --- gymnasium API ------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode at the first unit; ``options={"target": t}`` fixes the target."""
        super().reset(seed=seed)
        low, high = self.config.env.target
        if options and options.get("target") is not None:
            target = float(options["target"])
            self.task.check_target(target)
        elif high > low:
            target = float(self.np_random.uniform(low, high))
        else:
            target = low
        if target != self._target or self.config.env.anchor == "best":
            self._prior_keep = self._prior(target)
        self._target = target
        self._step = 0
        self._chosen = np.array(self.task.max_channels, dtype=np.int64)
        self._charged = 0.0
        self.last_candidate = None
        return self._observation(), {"target": target}

    def keep_to_channels(self, unit: int, keep_ratio: float) -> int:
        """Channel count for ``keep_ratio`` at ``unit`` given the earlier choices (with clipping)."""
        options = self.task.candidates[unit]
        n = int(options[np.argmin(np.abs(options - keep_ratio * self._full[unit]))])
        if self.config.env.budget_clipping:
            lo, hi = channel_bounds(
                self.task.cost_model,
                self._chosen,
                unit,
                self.task.min_channels,
                self.task.max_channels,
                options,
                self._target * self._total_cost,
                self.config.env.fill_budget,
            )
            n = min(max(n, lo), hi)
        return n

    def _choose(self, action: np.ndarray) -> int:
        """The current unit's channel count for ``action`` (checked, mapped, clipped)."""
        try:
            values = np.asarray(action, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"action must be one number in [-1, 1], got {action!r}") from None
        if values.size != 1:
            raise ValueError(
                f"action must be one number in [-1, 1] (shape (1,)), got {values.size} values"
            )
        a = float(values[0])
        if not np.isfinite(a):
            raise ValueError(f"action must be a finite number in [-1, 1], got {a}")
        t = self._step
        if self.config.env.action_mode == "residual":
            correction = self.config.env.residual_scale * min(max(a, -1.0), 1.0)
            keep = min(
                max(self._prior_keep[t] + correction, self.config.task.min_keep),
                self.config.task.max_keep,
            )
        else:
            keep = action_to_keep(a, self.config.task.min_keep, self.config.task.max_keep)
        return self.keep_to_channels(t, keep)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Set the current unit's keep-ratio; the last step prunes and scores the network."""
        if self._step < 0 or self._step >= len(self.units):
            raise ResetNeeded("call reset() before step(); the episode has not started or ended")
        self._chosen[self._step] = self._choose(action)
        self._step += 1
        if self._step < len(self.units):
            return self._observation(), self._shaping(self._step - 1), False, False, {}
        candidate = self._finish()
        outcome = Outcome(candidate.accuracy, candidate.macs, candidate.budget_ratio, self._target)
        episode_reward = float(self._reward_fn(outcome))
        info = {**candidate.to_dict(), "target": self._target, "reward": episode_reward}
        # the terminal potential is 0: the drops charged so far come back here
        return self._observation(), episode_reward + self._charged, True, False, info

    def pending_channels(self, action: np.ndarray) -> np.ndarray | None:
        """The channel configuration ``step(action)`` would send for evaluation, or ``None``
        when that step does not end the episode. Changes nothing: a vectorised env or a
        batched search collects these to score them in parallel first
        (:meth:`rlprune.evaluation.task.PruningTask.prefetch`)."""
        t = self._step
        if t != len(self.units) - 1:
            return None
        saved = int(self._chosen[t])
        self._chosen[t] = self._choose(action)
        try:
            return self._final_channels()
        finally:
            self._chosen[t] = saved

    def render(self) -> str | np.ndarray | None:
        """The episode so far as text: one line per unit decided (keep-ratio, channels),
        then the MACs so far against the target. ``ansi`` returns it, ``human`` prints it;
        ``rgb_array`` returns the keep-ratios as an image (:meth:`_render_image`)."""
        if self.render_mode is None:
            return None
        decided = max(self._step, 0)
        done = self.last_candidate is not None and decided == len(self.units)
        # once pruned, the channels evaluated (after budget top-up and fitting)
        chosen = self.last_candidate.channels if self.last_candidate and done else self._chosen
        if self.render_mode == "rgb_array":
            return self._render_image(np.asarray(chosen[:decided]) / self._full[:decided])
        what = "MACs" if self.task.config.metric == "macs" else "latency"
        lines = [f"target {self._target:.3f} of the {what}, unit {decided}/{len(self.units)}"]
        for i, unit in enumerate(self.units[:decided]):
            lines.append(
                f"  {unit.name:<24} keep {chosen[i] / self._full[i]:.3f} "
                f"({int(chosen[i])}/{int(self._full[i])} channels)"
            )
        if self.last_candidate is not None and done:
            c = self.last_candidate
            lines.append(
                f"  pruned: {what} ratio {c.budget_ratio:.3f}, val accuracy {c.accuracy:.4f}"
            )
        else:
            trial = self._full.astype(np.float64)
            trial[:decided] = self._chosen[:decided]
            ratio = self.task.cost_model.macs(trial) / self._total_cost
            lines.append(f"  {what} so far (the rest unpruned): {ratio:.3f}")
        text = "\n".join(lines) + "\n"
        if self.render_mode == "human":
            print(text, end="")
            return None
        return text

    def _render_image(self, keep: np.ndarray) -> np.ndarray:
        """A ``(64, 16 × units, 3)`` uint8 image: per unit a bar as high as its keep-ratio
        (blue when decided, grey full height when not), on white."""
        height, width = 64, 16
        image = np.full((height, width * len(self.units), 3), 255, dtype=np.uint8)
        for i in range(len(self.units)):
            decided = i < len(keep)
            top = height - round(height * float(keep[i])) if decided else 0
            color = (31, 119, 180) if decided else (200, 200, 200)
            image[top:, i * width + 2 : (i + 1) * width - 2] = color
        return image

    def _final_channels(self) -> np.ndarray:
        """The configuration to evaluate: with residual actions, budget left unused is given
        back; with budget clipping on, a network whose MACs model is approximate is measured
        and shrunk until it fits."""
        channels = np.array(self._chosen, dtype=np.int64)
        if self.config.env.action_mode == "residual" and self.config.env.budget_clipping:
            # corrections that cut channels would leave budget unused: give it back, first
            # to the units the policy moved up most (the prior itself is already full)
            moved = channels / self._full - self._prior_keep
            order = [int(i) for i in np.argsort(-moved, kind="stable")]
            channels = top_up(self.task, channels, self._target, order)
        if self.config.env.budget_clipping:
            channels = self.task.fit_measured(channels, self._target)
        return channels

    def _finish(self) -> Candidate:
        """Evaluate the chosen configuration (:meth:`_final_channels`)."""
        candidate = self.task.evaluate(self._final_channels())
        self.last_candidate = candidate
        if self.config.env.anchor == "best" and within_budget(candidate, self._target):
            held = self._anchors.get(self._target)
            if held is None or candidate.accuracy > held[0]:
                keep = np.asarray(candidate.channels, dtype=np.float64) / self._full
                self._anchors[self._target] = (candidate.accuracy, keep)
        return candidate
