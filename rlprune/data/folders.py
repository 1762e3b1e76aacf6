"""Image files on disk in ImageFolder's layout, as a dataset given by its folder alone.

``ROOT/train/<class>/<image>`` and ``ROOT/heldout/<class>/<image>`` (split into val and
test), or ``ROOT/train``, ``ROOT/val`` and ``ROOT/test``; a lone ``ROOT/val`` or
``ROOT/test`` beside ``train`` serves as the held-out set. Images are read one batch at a
time with Pillow (which matplotlib already brings), never all at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "ImageFiles", "image_folder", "image_folder_layout"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def image_folder_layout(root: Path) -> dict[str, Path] | None:
    """The split folders under ``root`` (``train`` plus ``heldout``, or ``val`` and
    ``test``, or one of them), or ``None`` when ``root`` has no ``train`` folder."""
    if not (root / "train").is_dir():
        return None
    present = {name: root / name for name in ("heldout", "val", "test") if (root / name).is_dir()}
    if "heldout" in present:
        return {"train": root / "train", "heldout": present["heldout"]}
    if {"val", "test"} <= set(present):
        return {"train": root / "train", "val": present["val"], "test": present["test"]}
    if present:
        return {"train": root / "train", "heldout": next(iter(present.values()))}
    return {"train": root / "train"}


def image_folder(
    root: str | Path, size: int | Sequence[int] | None = None, channels: int | None = None
) -> dict[str, Any]:
    """The splits of an image folder (:func:`image_folder_layout`) as :class:`ImageFiles`.

    Args:
        root: the folder.
        size: resize every image to ``size`` x ``size`` (or ``(height, width)``); default:
            the first training image's size.
        channels: 1 (grayscale) or 3 (RGB); default: the first training image's.

    Raises:
        DatasetError: no ``train`` folder, no held-out folder, no images, a class of a
            held-out split that training lacks, or a bad ``size``/``channels``.
    """
    base = Path(root)
    layout = image_folder_layout(base)
    if layout is None or len(layout) == 1:
        raise DatasetError(
            f"image folder {str(base)!r} needs {base / 'train'}/<class>/<image> and "
            f"{base / 'heldout'}/<class>/<image> (or val/ and test/ beside train/)"
        )
    if channels is not None and channels not in (1, 3):
        raise DatasetError(f"image folder channels must be 1 or 3, got {channels!r}")
    classes = sorted(p.name for p in layout["train"].iterdir() if p.is_dir())
    train = ImageFiles(layout["train"], classes, None, channels)
    if not len(train):
        raise DatasetError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {layout['train']}/<class>/; "
            "put each class's images in a folder named after it"
        )
    first_size, first_channels = train.probe()
    hw = _size(size) if size is not None else first_size
    chosen = channels if channels is not None else first_channels
    return {name: ImageFiles(folder, classes, hw, chosen) for name, folder in layout.items()}


def _size(size: int | Sequence[int]) -> tuple[int, int]:
    """``size`` as ``(height, width)``."""
    values = [size] if isinstance(size, int) else list(size)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(isinstance(v, int) and v > 0 for v in values):
        raise DatasetError(
            f"image folder size must be a positive int or [height, width], got {size!r}"
        )
    return int(values[0]), int(values[1])


class ImageFiles(Dataset[tuple[torch.Tensor, int]]):
    """``root/<class>/<image>`` files as ``(image float (C, H, W) in [0, 1], class index)``,
    classes indexed as in ``classes`` (the training split's, sorted), with ``targets`` as
    ImageFolder has (rlprune reads the labels from it instead of decoding every image)."""

    def __init__(
        self,
        root: Path,
        classes: Sequence[str],
        size: tuple[int, int] | None,
        channels: int | None,
    ) -> None:
        index = {name: label for label, name in enumerate(classes)}
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        unknown = [name for name in found if name not in index]
        if unknown:
            raise DatasetError(
                f"class folder {str(root / unknown[0])!r} has no counterpart in the train "
                "split; every class needs training images"
            )
        self.classes = list(classes)
        self.samples = [
            (path, index[name])
            for name in found
            for path in sorted((root / name).iterdir())
            if path.suffix.lower() in IMAGE_EXTENSIONS
        ]
        self.targets = [label for _, label in self.samples]
        self.size = size
        self.channels = channels

    def probe(self) -> tuple[tuple[int, int], int]:
        """The first image's ``(height, width)`` and channel count (1 or 3)."""
        from PIL import Image

        with Image.open(self.samples[0][0]) as image:
            width, height = image.size
            return (height, width), 1 if image.mode in _GRAY_MODES else 3

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[index]
        with Image.open(path) as image:
            converted = image.convert("L" if self.channels == 1 else "RGB")
            if self.size is not None and converted.size != (self.size[1], self.size[0]):
                converted = converted.resize((self.size[1], self.size[0]))
            pixels = np.asarray(converted, dtype=np.float32) / 255.0
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), label
