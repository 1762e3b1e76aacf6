"""The data contract: three disjoint splits (train / val / test) and a seeded loader.

Where the splits come from is not the core's business: :mod:`rlprune.data` loads the
bundled datasets, :func:`from_tensors` wraps a user's own tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import ConfigError, DatasetError, ModelError, one_line

__all__ = [
    "DataSplits",
    "check_finite",
    "check_model_fits",
    "from_tensors",
    "make_loader",
]


@dataclass(frozen=True)
class DataSplits:
    """Three disjoint splits of one dataset, ready for training and evaluation.

    ``train`` is for fine-tuning and BatchNorm calibration, ``val`` drives search decisions
    (the reward) and ``test`` is for reported numbers only. Each split is a map-style
    dataset of ``(image float32 (C, H, W), label int)`` samples: a
    :class:`~torch.utils.data.TensorDataset` (held in memory: the bundled datasets and
    :func:`from_tensors`) or any ``Dataset`` read through a ``DataLoader`` batch by batch
    (a dataset factory's, so that a split larger than memory works).

    ``source_indices`` maps each split name to the positions of its samples in the source
    data (for ``fashion-mnist``, ``train`` and ``val`` index the official training file and
    ``test`` the official test file). It is empty for :func:`from_tensors`.
    """

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    input_shape: tuple[int, int, int]
    num_classes: int
    name: str
    source_indices: dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)
    num_workers: int = field(default=0, compare=False)
    """``DataLoader`` worker processes for splits that are streamed (not ``TensorDataset``)."""

    @property
    def in_memory(self) -> bool:
        """Whether every split is a ``TensorDataset`` (held in memory, scored without a
        ``DataLoader``); otherwise the splits are read batch by batch."""
        return all(isinstance(s, TensorDataset) for s in (self.train, self.val, self.test))


def from_tensors(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    name: str = "custom",
) -> DataSplits:
    """Wrap user data (already split and normalised) as :class:`DataSplits`.

    Images must be ``(N, C, H, W)`` with the same ``(C, H, W)`` in every split; labels are
    integer class ids ``(N,)`` starting at 0. ``num_classes`` is the largest label + 1.
    NumPy arrays are accepted too. Images are converted to float32, labels to int64; no
    normalisation is applied. The caller guarantees that the splits are disjoint.

    Raises:
        DatasetError: a shape, dtype or label that does not fit, naming the split.
    """
    splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for split, x, y in (
        ("train", x_train, y_train),
        ("val", x_val, y_val),
        ("test", x_test, y_test),
    ):
        splits[split] = _check_split(split, x, y)

    input_shapes = {split: tuple(x.shape[1:]) for split, (x, _) in splits.items()}
    if len(set(input_shapes.values())) != 1:
        raise DatasetError(
            f"image shapes (C, H, W) differ between splits: {input_shapes}; "
            "give every split images of the same shape"
        )
    num_classes = max(int(y.max()) for _, y in splits.values()) + 1
    c, h, w = input_shapes["train"]
    return DataSplits(
        train=TensorDataset(*splits["train"]),
        val=TensorDataset(*splits["val"]),
        test=TensorDataset(*splits["test"]),
        input_shape=(int(c), int(h), int(w)),
        num_classes=num_classes,
        name=name,
    )


def make_loader(
    dataset: Dataset[tuple[torch.Tensor, ...]],
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
) -> DataLoader[tuple[torch.Tensor, ...]]:
    """Return a :class:`~torch.utils.data.DataLoader` whose order is seeded.

    Two loaders built with the same ``seed`` yield the same batches in the same order.

    Raises:
        ConfigError: ``batch_size`` is not a positive int.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is invalid; use a positive int")
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
    )


def _check_split(split: str, x: object, y: object) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x_t = torch.as_tensor(x)
        y_t = torch.as_tensor(y)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DatasetError(
            f"{split} data cannot be converted to tensors ({type(exc).__name__}: {exc}); "
            "pass torch tensors or NumPy arrays"
        ) from exc
    if x_t.ndim != 4:
        raise DatasetError(
            f"x_{split} has shape {tuple(x_t.shape)}; images must be (N, C, H, W) "
            "(add a channel axis with x.unsqueeze(1) for grayscale)"
        )
    if y_t.ndim != 1 or len(y_t) != len(x_t):
        raise DatasetError(
            f"y_{split} has shape {tuple(y_t.shape)} for {len(x_t)} images; "
            f"labels must be ({len(x_t)},)"
        )
    if len(x_t) == 0:
        raise DatasetError(f"the {split} split is empty; give it at least one sample")
    if y_t.is_floating_point() or y_t.is_complex() or y_t.dtype == torch.bool:
        raise DatasetError(
            f"y_{split} has dtype {y_t.dtype}; labels must be integer class ids (0..K-1)"
        )
    if int(y_t.min()) < 0:
        raise DatasetError(
            f"y_{split} holds label {int(y_t.min())}; labels must be class ids 0..K-1"
        )
    return x_t.to(torch.float32), y_t.to(torch.int64)


def check_model_fits(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Check that ``model`` maps a batch of ``input_shape`` images to ``num_classes`` logits.

    Runs one forward pass on a zero batch of 2 in eval mode without gradients; the
    model's train/eval mode is restored afterwards.

    Raises:
        ModelError: the forward pass fails, or the output is not ``(2, num_classes)``.
    """
    shape = tuple(int(d) for d in input_shape)
    parameter = next(iter(model.parameters()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = (
        parameter.dtype
        if parameter is not None and parameter.is_floating_point()
        else torch.float32
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros((2, *shape), device=device, dtype=dtype))
    except Exception as exc:
        raise ModelError(
            f"model fails on input shape {shape}: {one_line(exc)}; make the model's input "
            "channels and size match the dataset"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor):
        raise ModelError(
            f"model returns a {type(output).__name__} for input shape {shape}; it must return "
            "a tensor of logits (batch, num_classes)"
        )
    if tuple(output.shape) != (2, num_classes):
        raise ModelError(
            f"model output shape {tuple(output.shape)} for a batch of 2 inputs {shape}, "
            f"expected (2, {num_classes}); make the classifier output num_classes={num_classes}"
        )


def check_finite(
    model: nn.Module, data: DataSplits, calibration_batches: list[torch.Tensor]
) -> None:
    """Refuse non-finite numbers before any search: one inf in a calibration image turns
    every BatchNorm statistic into NaN and every candidate scores chance, silently.

    Checks the model's weights and buffers, every split held in memory, and the
    calibration batches (the training images that reach BatchNorm, for streamed splits).

    Raises:
        ModelError: a weight or buffer holds NaN or inf.
        DatasetError: images hold NaN or inf.
    """
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelError(
                f"model weight {name!r} holds {bad} NaN/inf value(s); the weights are "
                "damaged: retrain or reload them (rlprune pretrain)"
            )
    splits = {
        name: split.tensors[0]
        for name in ("train", "val", "test")
        if isinstance(split := getattr(data, name), TensorDataset)
    }
    if not isinstance(data.train, TensorDataset) and calibration_batches:
        splits["train (calibration batches)"] = torch.cat(calibration_batches)
    for name, images in splits.items():
        if images.is_floating_point() and not bool(torch.isfinite(images).all()):
            rows = (~torch.isfinite(images.reshape(len(images), -1))).any(dim=1)
            raise DatasetError(
                f"{int(rows.sum())} image(s) of the {name} split hold NaN or inf (the first "
                f"at index {int(rows.nonzero()[0])}); fix or drop them (their BatchNorm "
                "statistics would be NaN and every candidate would score chance)"
            )
