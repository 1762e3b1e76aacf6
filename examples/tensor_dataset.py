"""A dataset factory over plain tensors: scikit-learn's digits, scaled to [0, 1].

    rlprune info --env digits-cnn --dataset examples/tensor_dataset.py:digits
    rlprune info --env digits-cnn --dataset examples/tensor_dataset.py:digits --normalize none

A factory returns torch ``Dataset``s of ``(image (C, H, W), label)``; here a training set
and a held-out set (40 %) that rlprune splits into validation and test (seeded by the
preset's ``seed``; the digits preset's ``val_size: 360`` images go to validation). The images are ``pixel / 16``, the scaling
scikit-learn documents; the bundled digits preset's base model was trained on images
standardised with the train split's mean and std, so this data needs the same
normalisation (``normalize: {mean: [0.3050], std: [0.3759]}`` in a preset, which is what
the ``standardised`` factory below bakes in). With ``--normalize none`` the model scores
near chance and rlprune warns that model and data disagree.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch.utils.data import Dataset, TensorDataset

# pixel mean and std of the bundled digits preset's train split, images scaled to [0, 1]
DIGITS_MEAN, DIGITS_STD = 0.3050, 0.3759


def digits(heldout_fraction: float = 0.4, seed: int = 0) -> dict[str, Dataset | int]:
    """Digits as ``{"train", "heldout", "num_classes"}``, images in [0, 1]."""
    bunch = load_digits()
    x = torch.from_numpy((np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None])
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_heldout = int(round(heldout_fraction * len(y)))
    heldout, train = order[:n_heldout], order[n_heldout:]
    return {
        "train": TensorDataset(x[train], y[train]),
        "heldout": TensorDataset(x[heldout], y[heldout]),
        "num_classes": 10,
    }


def standardised(heldout_fraction: float = 0.4, seed: int = 0) -> dict[str, Dataset | int]:
    """:func:`digits`, standardised as the bundled preset's base model expects."""
    splits = digits(heldout_fraction, seed)
    for key in ("train", "heldout"):
        x, y = splits[key].tensors  # type: ignore[union-attr]
        splits[key] = TensorDataset((x - DIGITS_MEAN) / DIGITS_STD, y)
    return splits
