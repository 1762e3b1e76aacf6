"""A dataset factory over image files on disk, read batch by batch (never all in memory).

Layout (ImageFolder's): ``ROOT/train/<class>/*.png`` and ``ROOT/heldout/<class>/*.png``;
rlprune splits the held-out images into validation and test. From the repository's
root, with ``ROOT`` your folder (``--dataset-kwargs`` gives the factory its arguments)::

    rlprune pretrain --model examples/custom_model.py:build --epochs 2 --out w.pt \\
        --dataset examples/image_folder.py:folders --dataset-kwargs root=ROOT,size=32
    rlprune info --model examples/custom_model.py:build --weights w.pt \\
        --dataset examples/image_folder.py:folders --dataset-kwargs root=ROOT,size=32

rlprune reads this layout without a factory too: ``--dataset ROOT`` (images scaled to
[0, 1], not normalised; ``--dataset-kwargs size=32,channels=3`` to resize or convert).
This file shows how to bring your own transforms.

In a preset::

    dataset: examples/image_folder.py:folders
    dataset_kwargs: {root: /data/my-images, size: 64}
    normalize: none        # the transforms below already normalise
    num_workers: 2
    val_size: 0.5          # half of the held-out images for validation, half for test

With torchvision installed this uses its ``ImageFolder`` and ``transforms`` (Resize,
ToTensor, Normalize); torchvision stays optional, and without it a few lines of PIL do the
same (the test suite runs that path: torchvision's PyPI wheel needs a CUDA build of torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")


def folders(
    root: str,
    size: int = 64,
    mean: tuple[float, ...] = (0.5, 0.5, 0.5),
    std: tuple[float, ...] = (0.25, 0.25, 0.25),
) -> dict[str, Any]:
    """``{"train", "heldout"}`` image datasets under ``root``, resized to ``size`` and
    normalised with ``mean``/``std`` per channel."""
    base = Path(root)
    try:
        from torchvision import datasets, transforms

        transform = transforms.Compose(
            [
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )
        return {
            part: datasets.ImageFolder(str(base / part), transform=transform)
            for part in ("train", "heldout")
        }
    except Exception:  # not installed, or its compiled ops do not load with this torch
        return {part: PngFolder(base / part, size, mean, std) for part in ("train", "heldout")}


class PngFolder(Dataset[tuple[torch.Tensor, int]]):
    """``root/<class>/<image>`` files as ``(image float (3, size, size), class index)``,
    classes in sorted order, with ``targets`` as ImageFolder has (rlprune reads the labels
    from it instead of decoding every image)."""

    def __init__(
        self, root: Path, size: int, mean: tuple[float, ...], std: tuple[float, ...]
    ) -> None:
        self.classes = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        self.samples = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((Path(root) / name).iterdir())
            if path.suffix.lower() in EXTENSIONS
        ]
        self.targets = [label for _, label in self.samples]
        self.size = size
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((self.size, self.size))
            pixels = np.asarray(rgb, dtype=np.float32) / 255.0
        x = torch.from_numpy(pixels).permute(2, 0, 1)
        return (x - self.mean) / self.std, label
