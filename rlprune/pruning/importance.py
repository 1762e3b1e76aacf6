"""Channel importance criteria: small strategies behind one call signature."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch_pruning as tp

from ..errors import ConfigError

__all__ = ["IMPORTANCE", "Importance", "MagnitudeImportance", "RandomImportance", "make_importance"]


class Importance:
    """Scores every channel of a dependency group; low scores are pruned first."""

    def __call__(self, group: tp.Group) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class MagnitudeImportance(Importance):
    """Group Lp-norm of the coupled weights (torch-pruning's GroupMagnitudeImportance)."""

    def __init__(self, p: int) -> None:
        self._scorer = tp.importance.GroupMagnitudeImportance(
            p=p, group_reduction="mean", normalizer=None
        )

    def __call__(self, group: tp.Group) -> torch.Tensor:
        scores: torch.Tensor = self._scorer(group)
        return scores


class RandomImportance(Importance):
    """Random scores from a seeded generator, so a seed fixes the pruned channels."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(self, group: tp.Group) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed + len(group[0].idxs))
        return torch.rand(len(group[0].idxs), generator=generator)


IMPORTANCE: dict[str, Callable[[], Importance]] = {
    "l1": lambda: MagnitudeImportance(p=1),
    "l2": lambda: MagnitudeImportance(p=2),
    "random": lambda: RandomImportance(seed=0),
}


def make_importance(name: str | Importance) -> Importance:
    """Return the importance criterion called ``name`` (``l1``, ``l2``, ``random``)."""
    if isinstance(name, Importance):
        return name
    if name not in IMPORTANCE:
        raise ConfigError(
            f"unknown importance {name!r}; choose one of: {', '.join(sorted(IMPORTANCE))}"
        )
    return IMPORTANCE[name]()
