"""What every image data set shares: the in-memory dataset, the seeded validation split and the
md5 of a file."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class ImageDataset(Dataset):
    """A labelled image set held in memory as uint8, normalised later (on the device, in batches).

    Items are ``{"input": uint8 (C, H, W), "target": long ()}``.

    Args:
        images: uint8 tensor (N, C, H, W).
        targets: Integer class indices (N,), 0 <= target < len(classes).
        classes: Class names, indexed by target.
        mean: Per-channel mean of the training images on the [0, 1] scale.
        std: Per-channel standard deviation of the training images on the [0, 1] scale.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        classes: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {images.dtype} {images.shape}"
            )
        if targets.shape != images.shape[:1]:
            raise ValueError(f"{images.shape[0]} images but targets of shape {targets.shape}")
        if not len(mean) == len(std) == images.shape[1]:
            raise ValueError(f"mean and std need one value per channel ({images.shape[1]})")
        self.images = images
        self.targets = targets.long()
        self.classes = tuple(classes)
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input": self.images[index], "target": self.targets[index]}

    def select(self, indices: np.ndarray | Sequence[int]) -> ImageDataset:
        """The images at ``indices`` (e.g. one side of :func:`train_val_split`), as a new set
        with the same classes and normalisation constants.

        Args:
            indices: Positions into this set.
        """
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageDataset(
            self.images[index], self.targets[index], self.classes, self.mean, self.std
        )


def train_val_split(n: int, val_size: int | float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation set out of a training set of ``n`` items: a pure function of
    (n, val_size, seed), so every rank and every run draws the same split.

    Args:
        n: Size of the training set.
        val_size: Number of validation items, or a fraction of ``n`` in (0, 1).
        seed: Seed of the random choice.

    Returns:
        (train, val): sorted, disjoint int64 index arrays that together cover range(n).
    """
    count = round(val_size * n) if isinstance(val_size, float) else val_size
    if isinstance(val_size, float) and not 0 < val_size < 1:
        raise ValueError(f"a fractional val_size must lie in (0, 1), got {val_size}")
    if not 0 <= count <= n:
        raise ValueError(f"val_size {val_size} does not fit a training set of {n}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[count:]), np.sort(order[:count])


def file_md5(path: str | Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks.

    Args:
        path: The file.
    """
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not a security one
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()
