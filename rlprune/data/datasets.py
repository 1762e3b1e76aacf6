"""Datasets as three disjoint splits (train / val / test), loaded without network access.

Built-in datasets:

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).
- ``fashion-mnist`` (alias ``fmnist``): the standard IDX files, read from a local folder
  (see :func:`load_dataset` for the search order). Nothing is ever downloaded.

A folder of images in ImageFolder's layout is read as it is (:mod:`.folders`).
Anything else comes in through a dataset factory (``"package.module:factory"`` or
``"path/file.py:factory"``, see :func:`load_dataset`) or
:func:`rlprune.evaluation.splits.from_tensors`.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..code import is_code_spec, resolve_callable
from ..errors import ConfigError, DatasetError, one_line
from ..evaluation.splits import DataSplits
from .folders import image_folder, image_folder_layout

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_FILES",
    "SYSTEM_FASHION_MNIST_DIR",
    "load_dataset",
]

#: Canonical dataset names accepted by :func:`load_dataset`, and their aliases.
DATASET_NAMES: dict[str, str] = {
    "digits": "digits",
    "fashion-mnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
}

#: Installed by the Debian package ``dataset-fashion-mnist`` (the four ``.gz`` IDX files).
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The four IDX files, each read raw or with a ``.gz`` suffix.
FASHION_MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_FASHION_MNIST_CLASSES = 10
_DIGITS_TEST_FRACTION = 0.2
# The digits test split is fixed, whatever the seed: a model trained on one seed's train
# split must never meet those images again in another seed's test split (fashion-mnist
# gets the same guarantee from its official test set).
_DIGITS_TEST_SEED = 0

# Parsed fashion-mnist arrays, keyed by the resolved file paths with their size and
# modification time, so repeated loads in one process skip the gzip + parse work.
_IDX_CACHE: dict[tuple[tuple[str, int, int], ...], dict[str, np.ndarray]] = {}


def load_dataset(
    name_or_path: str,
    *,
    seed: int = 0,
    val_size: int | float = 0.2,
    data_dir: str | os.PathLike[str] | None = None,
    train_limit: int | None = None,
    kwargs: Mapping[str, Any] | None = None,
    normalize: str | Mapping[str, Any] | None = None,
    num_workers: int = 0,
) -> DataSplits:
    """Load a dataset by name, folder or factory spec as train / val / test splits.

    Args:
        name_or_path: ``"digits"``, ``"fashion-mnist"`` (alias ``"fmnist"``), a folder
            holding the four fashion-mnist IDX files (raw or ``.gz``), a folder of images
            in ImageFolder's layout (``ROOT/train/<class>/*.png`` and
            ``ROOT/heldout/<class>/*.png``, or ``val/`` and ``test/`` beside ``train/``;
            :func:`rlprune.data.folders.image_folder`, which takes ``size`` and
            ``channels`` through ``kwargs``), or a dataset factory spec.
        seed: Seeds the train/val split and ``train_limit`` subsampling.
        val_size: Validation samples carved out of the training pool: an ``int`` is a
            count, a ``float`` in (0, 1) a fraction of the pool. The pool is the official
            training set for fashion-mnist and what remains after the fixed 20 % test split
            for digits.
        data_dir: Folder holding the fashion-mnist IDX files (or a ``fashion-mnist``
            subfolder); when given, it is the only place searched. Otherwise the search
            order is ``name_or_path`` if it is a folder, then ``$RLPRUNE_DATA`` (itself or
            its ``fashion-mnist`` subfolder), then ``/usr/share/datasets/fashion-mnist``
            (Debian package ``dataset-fashion-mnist``).
        train_limit: Keep at most this many training samples (seeded, stratified), for
            quick runs. Validation and test splits are not affected.
        kwargs: Keyword arguments for a dataset factory (or an image folder).
        normalize: ``"standard"``, ``"none"`` or ``{"mean": [...], "std": [...]}`` (per
            channel); ``None`` means standard for the bundled datasets and none for a
            factory (its own transforms normalise).
        num_workers: ``DataLoader`` workers for a factory's splits.

    Bundled datasets: images are float32 ``(N, C, H, W)`` held in memory, scaled to [0, 1]
    (digits: pixel / 16, fashion-mnist: pixel / 255) and then, by default, standardised
    with one mean and standard deviation over the (final) train split's pixels.

    A *dataset factory* (``"package.module:factory"`` or ``"path/file.py:factory"``,
    called with ``kwargs``) returns torch map-style ``Dataset``s of ``(image (C, H, W),
    label)`` samples, read batch by batch (never all in memory), as ``{"train", "val",
    "test"}`` or ``(train, val, test)``, or as ``{"train", "heldout"}`` or
    ``(train, heldout)``: rlprune then splits the held-out set into val (``val_size``:
    a count or a fraction) and test with a permutation seeded by ``seed``. A mapping may
    add ``"num_classes"``; otherwise the classes come from the splits' ``targets``
    (``ImageFolder`` and torchvision datasets have one), else from one pass over the labels.
    The validation split is read in a seeded random order, so that a probe on its first
    k images is a random sample. Splits must be disjoint: rlprune cannot check a
    factory's, so keep them apart in the factory.

    Raises:
        DatasetError: unknown name, files not found, corrupt or truncated files.
        ConfigError: ``val_size`` or ``train_limit`` out of range.
    """
    key = str(name_or_path).strip().lower()
    canonical = DATASET_NAMES.get(key)
    folder = Path(name_or_path)
    if canonical is None and folder.is_dir() and not _holds_fashion_mnist(folder):
        if image_folder_layout(folder) is None:
            raise DatasetError(
                f"dataset folder {str(folder)!r} holds neither images in ImageFolder's layout "
                f"({folder / 'train'}/<class>/*.png and {folder / 'heldout'}/<class>/*.png, or "
                "val/ and test/ beside train/) nor the fashion-mnist IDX files "
                f"({', '.join(FASHION_MNIST_FILES.values())})"
            )
        return _from_factory(
            str(name_or_path),
            image_folder,
            kwargs={"root": str(folder), **dict(kwargs or {})},
            seed=seed,
            val_size=val_size,
            normalize=normalize,
            num_workers=num_workers,
        )
    if canonical is None and is_code_spec(str(name_or_path)) and not folder.is_dir():
        factory = resolve_callable(
            str(name_or_path),
            kind="dataset",
            builtin={},
            error=DatasetError,
            returns="the dataset splits",
        )
        return _from_factory(
            str(name_or_path),
            factory,
            kwargs=dict(kwargs or {}),
            seed=seed,
            val_size=val_size,
            normalize=normalize,
            num_workers=num_workers,
        )
    canonical, data_dir = _bundled_name(name_or_path, canonical, data_dir)
    if train_limit is not None and (
        isinstance(train_limit, bool) or not isinstance(train_limit, int) or train_limit < 1
    ):
        raise ConfigError(
            f"train_limit={train_limit!r} is invalid; use a positive int, or None for all"
        )

    if canonical == "digits":
        if data_dir is not None:
            warnings.warn(
                f"data_dir={str(data_dir)!r} is ignored: 'digits' is bundled with scikit-learn",
                stacklevel=2,
            )
        return _load_digits(
            seed=seed, val_size=val_size, train_limit=train_limit, normalize=normalize
        )
    return _load_fashion_mnist(
        seed=seed,
        val_size=val_size,
        data_dir=data_dir,
        train_limit=train_limit,
        normalize=normalize,
    )


def _holds_fashion_mnist(folder: Path) -> bool:
    """Whether ``folder`` (or its ``fashion-mnist`` subfolder) holds the four IDX files."""
    return any(_idx_files_in(f) is not None for f in (folder, folder / "fashion-mnist"))


def _bundled_name(
    name_or_path: str, canonical: str | None, data_dir: str | os.PathLike[str] | None
) -> tuple[str, str | os.PathLike[str] | None]:
    """The bundled dataset ``name_or_path`` names and the folder to search (a folder is one)."""
    if canonical is None and Path(name_or_path).is_dir():
        canonical = "fashion-mnist"
        if data_dir is None:
            data_dir = name_or_path
    if canonical is None and ("/" in str(name_or_path) or os.sep in str(name_or_path)):
        raise DatasetError(
            f"dataset folder {str(name_or_path)!r} does not exist; pass an existing folder "
            f"holding the fashion-mnist IDX files, or one of {sorted(DATASET_NAMES)}"
        )
    if canonical is None:
        raise DatasetError(
            f"unknown dataset {name_or_path!r}; use one of {sorted(DATASET_NAMES)}, a folder "
            "holding the fashion-mnist IDX files, or a factory 'package.module:factory' / "
            "'path/file.py:factory' (or pass your own tensors to from_tensors())"
        )
    return canonical, data_dir


# --------------------------------------------------------------------------- digits


def _load_digits(
    *,
    seed: int,
    val_size: int | float,
    train_limit: int | None,
    normalize: str | Mapping[str, Any] | None = None,
) -> DataSplits:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    labels = np.asarray(bunch.target, dtype=np.int64)

    n_test = int(round(_DIGITS_TEST_FRACTION * len(labels)))
    pool_idx, test_idx = _split_indices(
        np.arange(len(labels)), labels, n_test, seed=_DIGITS_TEST_SEED
    )
    n_val = _val_count(val_size, len(pool_idx))
    train_idx, val_idx = _split_indices(pool_idx, labels[pool_idx], n_val, seed=seed)
    train_idx = _limit(train_idx, labels, train_limit, seed=seed)
    return _make_splits(
        "digits",
        train=(images, labels, train_idx),
        val=(images, labels, val_idx),
        test=(images, labels, test_idx),
        num_classes=10,
        normalize=normalize,
    )


# --------------------------------------------------------------------- fashion-mnist


def _load_fashion_mnist(
    *,
    seed: int,
    val_size: int | float,
    data_dir: str | os.PathLike[str] | None,
    train_limit: int | None,
    normalize: str | Mapping[str, Any] | None = None,
) -> DataSplits:
    arrays = _read_fashion_mnist(_find_fashion_mnist(data_dir))
    train_images, train_labels = arrays["train_images"], arrays["train_labels"]
    test_images, test_labels = arrays["test_images"], arrays["test_labels"]

    n_val = _val_count(val_size, len(train_labels))
    train_idx, val_idx = _split_indices(
        np.arange(len(train_labels)), train_labels, n_val, seed=seed
    )
    train_idx = _limit(train_idx, train_labels, train_limit, seed=seed)
    return _make_splits(
        "fashion-mnist",
        train=(train_images, train_labels, train_idx),
        val=(train_images, train_labels, val_idx),
        test=(test_images, test_labels, np.arange(len(test_labels))),
        num_classes=_FASHION_MNIST_CLASSES,
        scale=255.0,
        normalize=normalize,
    )


def _find_fashion_mnist(data_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    """Return the four IDX file paths from the first folder that holds all of them."""
    if data_dir is not None:
        roots = [Path(data_dir)]
    else:
        roots = []
        env = os.environ.get("RLPRUNE_DATA")
        if env:
            roots.append(Path(env))
        roots.append(SYSTEM_FASHION_MNIST_DIR)

    searched: list[str] = []
    for root in roots:
        for folder in (root, root / "fashion-mnist"):
            if str(folder) in searched:
                continue
            searched.append(str(folder))
            files = _idx_files_in(folder)
            if files is not None:
                return files
    raise DatasetError(
        f"fashion-mnist not found in {searched}; install it with "
        "`apt-get install dataset-fashion-mnist` or set RLPRUNE_DATA to a folder holding the "
        f"IDX files ({', '.join(FASHION_MNIST_FILES.values())}, raw or .gz)"
    )


def _idx_files_in(folder: Path) -> dict[str, Path] | None:
    if not folder.is_dir():
        return None
    found: dict[str, Path] = {}
    for key, stem in FASHION_MNIST_FILES.items():
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def _read_fashion_mnist(files: dict[str, Path]) -> dict[str, np.ndarray]:
    resolved = {key: path.resolve() for key, path in files.items()}
    cache_key = tuple(
        (str(path), path.stat().st_size, path.stat().st_mtime_ns)
        for path in (resolved[key] for key in FASHION_MNIST_FILES)
    )
    cached = _IDX_CACHE.get(cache_key)
    if cached is not None:
        return cached

    arrays = {key: _read_idx(path) for key, path in resolved.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        images_file, labels_file = resolved[f"{part}_images"], resolved[f"{part}_labels"]
        if images.ndim != 3:
            raise DatasetError(
                f"{images_file} holds an array of shape {images.shape}, expected images "
                "(N, H, W); replace it with the fashion-mnist image file"
            )
        if labels.ndim != 1:
            raise DatasetError(
                f"{labels_file} holds an array of shape {labels.shape}, expected labels (N,); "
                "replace it with the fashion-mnist label file"
            )
        if len(images) != len(labels):
            raise DatasetError(
                f"{images_file} has {len(images)} images but {labels_file} has "
                f"{len(labels)} labels; use a matching pair of files"
            )
        if labels.size and int(labels.max()) >= _FASHION_MNIST_CLASSES:
            raise DatasetError(
                f"{labels_file} holds label {int(labels.max())}, expected 0.."
                f"{_FASHION_MNIST_CLASSES - 1}; replace it with the fashion-mnist label file"
            )
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DatasetError(
            f"train images are {arrays['train_images'].shape[1:]} but test images are "
            f"{arrays['test_images'].shape[1:]}; use the files of one dataset"
        )
    arrays["train_labels"] = arrays["train_labels"].astype(np.int64)
    arrays["test_labels"] = arrays["test_labels"].astype(np.int64)
    for array in arrays.values():
        array.setflags(write=False)
    _IDX_CACHE[cache_key] = arrays
    return arrays


def _read_idx(path: Path) -> np.ndarray:
    """Parse one unsigned-byte IDX file (optionally gzipped) into a NumPy array."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"cannot read {path}: {type(exc).__name__}: {exc}; the file is corrupt or "
            "truncated, replace it (e.g. reinstall dataset-fashion-mnist)"
        ) from exc

    fix = "the file is corrupt or truncated, replace it (e.g. reinstall dataset-fashion-mnist)"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{path} is not an IDX file (bad magic number); {fix}")
    if raw[2] != 0x08:
        raise DatasetError(
            f"{path} has IDX data type 0x{raw[2]:02x}, expected 0x08 (unsigned byte); {fix}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{path} has a bad IDX header ({ndim} dimensions); {fix}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DatasetError(
            f"{path} holds {len(raw)} bytes but its IDX header {shape} needs {expected}; {fix}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# -------------------------------------------------------------------------- helpers


def _val_count(val_size: int | float, pool: int) -> int:
    """Turn ``val_size`` (count or fraction of the pool) into a sample count."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise ConfigError(
            f"val_size={val_size!r} is invalid; use an int (count) or a float in (0, 1)"
        )
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise ConfigError(f"val_size={val_size!r} is out of range; a float must lie in (0, 1)")
        count = int(round(val_size * pool))
    else:
        count = val_size
    if pool < 2:
        raise ConfigError(
            f"{pool} sample{'s' if pool != 1 else ''} cannot be split into validation and "
            "test; give at least 2"
        )
    if not 1 <= count <= pool - 1:
        raise ConfigError(
            f"val_size={val_size!r} gives {count} validation samples out of {pool}; "
            f"choose a size that leaves 1..{pool - 1} for validation"
        )
    return count


def _split_indices(
    indices: np.ndarray, labels: np.ndarray, n_second: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, ``n_second`` samples), stratified by label when possible.

    Both parts are returned sorted, so the sample order does not depend on the seed.
    """
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(labels))
    _, counts = np.unique(labels, return_counts=True)
    stratify = (
        labels
        if counts.min() >= 2 and n_second >= n_classes and len(indices) - n_second >= n_classes
        else None
    )
    first, second = train_test_split(
        indices, test_size=n_second, random_state=seed, stratify=stratify
    )
    return np.sort(first), np.sort(second)


def _limit(
    train_idx: np.ndarray, labels: np.ndarray, train_limit: int | None, *, seed: int
) -> np.ndarray:
    if train_limit is None or train_limit >= len(train_idx):
        return train_idx
    _, kept = _split_indices(train_idx, labels[train_idx], train_limit, seed=seed)
    return kept


def _make_splits(
    name: str,
    *,
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    num_classes: int,
    scale: float = 1.0,
    normalize: str | Mapping[str, Any] | None = None,
) -> DataSplits:
    """Index, scale to [0, 1] and normalise: by default (``standard``) with the train
    split's pixel mean and standard deviation, or as ``normalize`` says."""
    train_x = _to_float(train[0][train[2]], scale)
    c, h, w = train_x.shape[1:]
    if normalize is None or normalize == "standard":
        mean: Any = np.float32(train_x.mean())
        std: Any = np.float32(train_x.std() or 1.0)
    elif normalize == "none":
        mean, std = np.float32(0.0), np.float32(1.0)
    elif isinstance(normalize, Mapping):
        mean, std = (v.numpy()[None] for v in _per_channel(normalize, int(c)))
    else:
        raise ConfigError(f"normalize {normalize!r} is invalid; use standard, none or a mapping")

    def build(part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TensorDataset:
        images, labels, idx = part
        x = train_x if part is train else _to_float(images[idx], scale)
        x = (x - mean) / std
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(labels[idx].copy()))

    return DataSplits(
        train=build(train),
        val=build(val),
        test=build(test),
        input_shape=(int(c), int(h), int(w)),
        num_classes=num_classes,
        name=name,
        source_indices={"train": train[2], "val": val[2], "test": test[2]},
    )


def _to_float(images: np.ndarray, scale: float) -> np.ndarray:
    x = images.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None, :, :]
    if scale != 1.0:
        x /= np.float32(scale)
    return x


# ------------------------------------------------------------------ dataset factories


class Normalized(Dataset[tuple[torch.Tensor, Any]]):
    """``(image - mean) / std`` per channel over another dataset's samples, on the fly."""

    def __init__(self, dataset: Dataset[Any], mean: Sequence[float], std: Sequence[float]):
        self.dataset = dataset
        self.mean = torch.tensor([float(m) for m in mean]).view(-1, 1, 1)
        self.std = torch.tensor([float(v) for v in std]).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[index]
        return (torch.as_tensor(image, dtype=torch.float32) - self.mean) / self.std, label


class ReadChecked(Dataset[Any]):
    """Another dataset's samples, a failed read (an unreadable or truncated image file)
    turned into a :class:`DatasetError` naming the dataset, split and sample, so that it is
    not taken for a problem of the output folder."""

    def __init__(self, dataset: Dataset[Any], spec: str, split: str) -> None:
        self.dataset = dataset
        self.spec = spec
        self.split = split

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        """The wrapped dataset's attributes (``indices``, ``targets``, ...) show through."""
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as exc:
            raise DatasetError(
                f"reading sample {index} of the {self.split} split of dataset {self.spec!r} "
                f"failed: {one_line(exc)}; check the dataset's files and transforms"
            ) from exc


def _per_channel(normalize: Mapping[str, Any], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``normalize``'s mean and std as ``(C, 1, 1)`` tensors (one value serves every channel)."""
    values = []
    for key in ("mean", "std"):
        raw = normalize[key]
        numbers = [float(v) for v in (raw if isinstance(raw, (list, tuple)) else [raw])]
        if len(numbers) == 1:
            numbers = numbers * channels
        if len(numbers) != channels:
            raise ConfigError(
                f"normalize {key} has {len(numbers)} values for {channels}-channel images; "
                f"give one value or {channels}"
            )
        values.append(torch.tensor(numbers, dtype=torch.float32).view(-1, 1, 1))
    return values[0], values[1]


MAX_SAMPLES = 100_000_000
"""The most samples one split of a dataset factory may have (the splits are shuffled by
index arrays held in memory)."""


_SHAPE_HINT = (
    "return {'train': ..., 'val': ..., 'test': ...} or {'train': ..., 'heldout': ...} "
    "(or a tuple of 3 or 2) of torch Datasets yielding (image (C, H, W), label) pairs"
)


def _from_factory(
    spec: str,
    factory: Any,
    *,
    kwargs: dict[str, Any],
    seed: int,
    val_size: int | float,
    normalize: str | Mapping[str, Any] | None,
    num_workers: int,
) -> DataSplits:
    """Call a dataset factory, check what it returns, and make :class:`DataSplits`."""
    returned = _call_factory(spec, factory, kwargs)
    parts, num_classes = _parts(spec, returned)
    _check_parts(spec, parts)
    _split_val_and_test(spec, parts, seed=seed, val_size=val_size)
    shapes = {name: _sample_shape(spec, name, part) for name, part in parts.items()}
    if len(set(shapes.values())) != 1:
        raise DatasetError(
            f"dataset {spec!r} has images of different shapes across splits: {shapes}; "
            "resize them to one (C, H, W) in the factory's transforms"
        )
    num_classes = _num_classes(spec, parts, num_classes, num_workers)
    parts = _normalized(parts, normalize, shapes["train"][0])
    parts = {
        name: part if isinstance(part, TensorDataset) else ReadChecked(part, spec, name)
        for name, part in parts.items()
    }
    c, h, w = shapes["train"]
    return DataSplits(
        train=parts["train"],
        val=parts["val"],
        test=parts["test"],
        input_shape=(c, h, w),
        num_classes=num_classes,
        name=spec,
        num_workers=num_workers,
    )


def _call_factory(spec: str, factory: Any, kwargs: dict[str, Any]) -> Any:
    """What the factory returns for ``kwargs``; its failure as a :class:`DatasetError`."""
    try:
        return factory(**kwargs)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(
            f"dataset {spec!r} failed with {kwargs}: {one_line(exc)}; check the factory and "
            "dataset_kwargs"
        ) from exc


def _check_parts(spec: str, parts: Mapping[str, Any]) -> None:
    """Refuse a split that is not a torch ``Dataset`` with a length, or that is empty."""
    for name, part in parts.items():
        if not isinstance(part, Dataset) or not hasattr(part, "__len__"):
            raise DatasetError(
                f"dataset {spec!r} gave a {type(part).__name__} as {name}, not a torch Dataset "
                f"with a length; {_SHAPE_HINT}"
            )
        if len(part) == 0:
            raise DatasetError(f"the {name} split of dataset {spec!r} is empty; give it samples")
        if len(part) > MAX_SAMPLES:
            raise DatasetError(
                f"the {name} split of dataset {spec!r} claims {len(part):,} samples, more than "
                f"the {MAX_SAMPLES:,} rlprune can index; check the dataset's __len__"
            )


def _split_val_and_test(
    spec: str, parts: dict[str, Any], *, seed: int, val_size: int | float
) -> None:
    """Split a held-out set into val and test, or put val in a seeded order (in ``parts``)."""
    if "heldout" in parts:
        heldout = parts.pop("heldout")
        order = np.random.default_rng(seed).permutation(len(heldout))
        try:
            n_val = _val_count(val_size, len(order))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (the held-out set of dataset {spec!r})") from None
        parts["val"] = Subset(heldout, order[:n_val].tolist())
        parts["test"] = Subset(heldout, np.sort(order[n_val:]).tolist())
    else:  # a seeded random order, so that a probe on the first k images is a random sample
        order = np.random.default_rng(seed).permutation(len(parts["val"]))
        parts["val"] = Subset(parts["val"], order.tolist())


def _num_classes(
    spec: str, parts: Mapping[str, Any], num_classes: int | None, num_workers: int
) -> int:
    """The class count (the factory's, else from the labels), refusing labels outside it."""
    labels = {name: _known_labels(part) for name, part in parts.items()}
    if num_classes is None:
        for name, part in parts.items():
            if labels[name] is None:  # no `targets`: one pass over the labels
                labels[name] = _scan_labels(part, num_workers)
        num_classes = max(int(v.max()) for v in labels.values() if v is not None) + 1
    for name, known in labels.items():
        if known is None or not len(known):
            continue
        low, high = int(known.min()), int(known.max())
        if low < 0 or high >= num_classes:
            raise DatasetError(
                f"the {name} split of dataset {spec!r} holds label {low if low < 0 else high}, "
                f"outside 0..{num_classes - 1}; labels must be class ids 0..num_classes-1"
            )
    return int(num_classes)


def _normalized(
    parts: dict[str, Any], normalize: str | Mapping[str, Any] | None, channels: int
) -> dict[str, Any]:
    """The splits normalised per channel as asked; ``standard`` needs data held in memory."""
    if normalize == "standard":
        raise ConfigError(
            "normalize: standard needs the bundled datasets' in-memory train split; for a "
            "dataset factory give normalize: {mean: [...], std: [...]} or normalise in its "
            "transforms (normalize: none)"
        )
    if isinstance(normalize, Mapping):
        mean, std = _per_channel(normalize, channels)
        parts = {
            name: Normalized(part, mean.flatten().tolist(), std.flatten().tolist())
            for name, part in parts.items()
        }
    return parts


def _parts(spec: str, returned: Any) -> tuple[dict[str, Any], int | None]:
    """The splits a factory returned, by name, and its ``num_classes`` if it gave one."""
    num_classes = None
    if isinstance(returned, Mapping):
        parts = {k: v for k, v in returned.items() if k != "num_classes"}
        num_classes = returned.get("num_classes")
        if num_classes is not None and (
            isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2
        ):
            raise DatasetError(
                f"dataset {spec!r} gave num_classes={num_classes!r}; give an int >= 2 or leave "
                "it out"
            )
        if set(parts) not in ({"train", "val", "test"}, {"train", "heldout"}):
            raise DatasetError(f"dataset {spec!r} returned keys {sorted(parts)}; {_SHAPE_HINT}")
        return parts, num_classes
    if isinstance(returned, (tuple, list)) and len(returned) in (2, 3):
        names = ("train", "val", "test") if len(returned) == 3 else ("train", "heldout")
        return dict(zip(names, returned, strict=True)), None
    raise DatasetError(f"dataset {spec!r} returned a {type(returned).__name__}; {_SHAPE_HINT}")


def _sample_shape(spec: str, name: str, part: Dataset[Any]) -> tuple[int, int, int]:
    """The ``(C, H, W)`` of a split's first sample, checking that it is an (image, label) pair."""
    try:
        sample = part[0]
    except Exception as exc:
        raise DatasetError(
            f"reading sample 0 of the {name} split of dataset {spec!r} failed: "
            f"{one_line(exc)}; check the dataset's files and transforms"
        ) from exc
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DatasetError(
            f"the {name} split of dataset {spec!r} yields a {type(sample).__name__}, not an "
            "(image, label) pair; return (image tensor (C, H, W), int label) from __getitem__"
        )
    image, label = sample
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.dtype != torch.float32:
        what = (
            f"a {tuple(image.shape)} {image.dtype} tensor"
            if isinstance(image, torch.Tensor)
            else f"a {type(image).__name__}"
        )
        raise DatasetError(
            f"the {name} split of dataset {spec!r} yields {what} as image; images must be "
            "float32 tensors (C, H, W) (add transforms.ToTensor(), .float(), or unsqueeze(0) "
            "for grayscale)"
        )
    if isinstance(label, torch.Tensor):
        label = label.item() if label.numel() == 1 else None
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise DatasetError(
            f"the {name} split of dataset {spec!r} yields label {sample[1]!r}; labels must be "
            "integer class ids 0..K-1"
        )
    c, h, w = (int(d) for d in image.shape)
    return (c, h, w)


def _known_labels(part: Dataset[Any]) -> np.ndarray | None:
    """A split's labels without reading its images: its ``targets`` (through ``Subset``s
    and :class:`Normalized`), or ``None`` when it has none."""
    if isinstance(part, Subset):
        inner = _known_labels(part.dataset)
        return None if inner is None else inner[np.asarray(part.indices, dtype=np.int64)]
    if isinstance(part, Normalized):
        return _known_labels(part.dataset)
    if isinstance(part, TensorDataset) and len(part.tensors) >= 2:
        return part.tensors[1].numpy()
    targets = getattr(part, "targets", None)
    if targets is None:
        return None
    try:
        values = np.asarray(targets)
    except (TypeError, ValueError):
        return None
    return values.astype(np.int64) if values.ndim == 1 and len(values) == len(part) else None  # type: ignore[arg-type]


def _scan_labels(part: Dataset[Any], num_workers: int) -> np.ndarray:
    """Every label of a split, in one streamed pass (for datasets without ``targets``)."""
    loader = torch.utils.data.DataLoader(part, batch_size=256, num_workers=num_workers)
    return np.concatenate([np.asarray(y, dtype=np.int64).reshape(-1) for _, y in loader])
