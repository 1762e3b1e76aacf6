"""Datasets as three disjoint splits (train / val / test), loaded without network access.

Built-in datasets:

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes).
- ``fashion-mnist`` (alias ``fmnist``): the standard IDX files, read from a local folder
  (see :func:`load_dataset` for the search order). Nothing is ever downloaded.

Anything else comes in through :func:`rlprune.core.splits.from_tensors`.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..core.splits import DataSplits
from ..errors import ConfigError, DatasetError

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
) -> DataSplits:
    """Load a dataset by name (or fashion-mnist from a folder) as train / val / test splits.

    Args:
        name_or_path: ``"digits"``, ``"fashion-mnist"`` (alias ``"fmnist"``), or a folder
            holding the four fashion-mnist IDX files (raw or ``.gz``).
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

    Images are float32 ``(N, C, H, W)``, scaled to [0, 1] and then standardised with the
    mean and standard deviation of the (final) train split.

    Raises:
        DatasetError: unknown name, files not found, corrupt or truncated files.
        ConfigError: ``val_size`` or ``train_limit`` out of range.
    """
    key = str(name_or_path).strip().lower()
    canonical = DATASET_NAMES.get(key)
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
            f"unknown dataset {name_or_path!r}; use one of {sorted(DATASET_NAMES)} or a folder "
            "holding the fashion-mnist IDX files (or pass your own tensors to from_tensors())"
        )
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
        return _load_digits(seed=seed, val_size=val_size, train_limit=train_limit)
    return _load_fashion_mnist(
        seed=seed, val_size=val_size, data_dir=data_dir, train_limit=train_limit
    )


# --------------------------------------------------------------------------- digits


def _load_digits(*, seed: int, val_size: int | float, train_limit: int | None) -> DataSplits:
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
    )


# --------------------------------------------------------------------- fashion-mnist


def _load_fashion_mnist(
    *,
    seed: int,
    val_size: int | float,
    data_dir: str | os.PathLike[str] | None,
    train_limit: int | None,
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
) -> DataSplits:
    """Index, scale to [0, 1] and standardise with the train split's statistics."""
    train_x = _to_float(train[0][train[2]], scale)
    mean = float(train_x.mean())
    std = float(train_x.std()) or 1.0

    def build(part: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TensorDataset:
        images, labels, idx = part
        x = train_x if part is train else _to_float(images[idx], scale)
        x = (x - mean) / std
        return TensorDataset(torch.from_numpy(x), torch.from_numpy(labels[idx].copy()))

    c, h, w = train_x.shape[1:]
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
