"""Fashion-MNIST and MNIST from their IDX files.

Format (http://yann.lecun.com/exdb/mnist/): an IDX file is a 4-byte magic number, two zero
bytes, a type code (0x08: unsigned bytes) and the number of dimensions, then one big-endian
uint32 per dimension, then the data, row-major. Images are ``0x00000803`` (N, 28, 28), labels
``0x00000801`` (N,) in 0..9. Each split is a pair of files in one folder, gzipped (``.gz``) or
raw: ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, 60,000 training and 10,000 test images.

The Debian package ``dataset-fashion-mnist`` installs Fashion-MNIST's four ``.gz`` files in
``/usr/share/datasets/fashion-mnist/``, the default folder here. Debian re-compressed them, so the
upstream md5 of a ``.gz`` does not apply; instead each file's header (magic number, dimensions)
and decompressed size are checked, and the images against the labels.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import IO, Literal

import numpy as np
import torch

from ...errors import DataError
from .base import ImageDataset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
MNIST_CLASSES = tuple(str(digit) for digit in range(10))
# Per-channel statistics of the 60,000 training images on the [0, 1] scale (Fashion-MNIST's
# measured on the Debian files; MNIST's the standard pair).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
UBYTE = 0x08


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file, gzipped if its name ends in ``.gz``.

    Decompression stops one byte after the size the header declares, so a damaged or hostile
    ``.gz`` cannot fill the memory.

    Args:
        path: The file.
        ndim: The number of dimensions it must have (3 for images, 1 for labels).

    Returns:
        A uint8 array of the declared shape.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) < 4 or magic[:3] != bytes([0, 0, UBYTE]) or magic[3] != ndim:
                raise DataError(
                    f"{path} starts with {magic.hex() or 'nothing'}, not the IDX magic number "
                    f"{bytes([0, 0, UBYTE, ndim]).hex()} of unsigned bytes in {ndim} dimensions: "
                    "it is not this IDX file or is damaged"
                )
            header = f.read(4 * ndim)
            if len(header) < 4 * ndim:
                raise DataError(f"{path} ends inside its IDX header: the file is truncated")
            shape = struct.unpack(f">{ndim}I", header)
            data = np.empty(int(np.prod(shape)), np.uint8)
            got = _read_into(f, memoryview(data))
            extra = len(f.read(1))
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path} cannot be read ({err}): the file is damaged") from err
    if got < data.size or extra:
        found = f"only {got:,}" if got < data.size else "more than"
        raise DataError(
            f"{path} holds {found} data bytes after its header, which declares {data.size:,} "
            f"(shape {shape}): the file is truncated or damaged"
        )
    return data.reshape(shape)


def load_fashion_mnist(
    data_dir: str | Path = FASHION_MNIST_DIR, split: Literal["train", "test"] = "train"
) -> ImageDataset:
    """Fashion-MNIST: 60,000 training or 10,000 test images of clothes, 1 x 28 x 28, 10 classes.

    Args:
        data_dir: Folder of the four IDX files (the Debian package's folder by default).
        split: "train" or "test".
    """
    hint = (
        "install the Debian package dataset-fashion-mnist (its files go to "
        f"{FASHION_MNIST_DIR}) or place the Fashion-MNIST IDX files (.gz or raw) in {data_dir}"
    )
    return _load(
        Path(data_dir), split, FASHION_MNIST_CLASSES, FASHION_MNIST_MEAN, FASHION_MNIST_STD, hint
    )


def load_mnist(data_dir: str | Path, split: Literal["train", "test"] = "train") -> ImageDataset:
    """MNIST: 60,000 training or 10,000 test images of handwritten digits, 1 x 28 x 28.

    Args:
        data_dir: Folder of the four IDX files.
        split: "train" or "test".
    """
    hint = f"place the MNIST IDX files (.gz or raw) in {data_dir}"
    return _load(Path(data_dir), split, MNIST_CLASSES, MNIST_MEAN, MNIST_STD, hint)


def _load(
    data_dir: Path,
    split: str,
    classes: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    hint: str,
) -> ImageDataset:
    """Read and cross-check one split's image and label files."""
    if split not in FILES:
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    image_file, label_file = (_find(data_dir, name, hint) for name in FILES[split])
    images, labels = read_idx(image_file, 3), read_idx(label_file, 1)
    if len(images) != len(labels):
        raise DataError(
            f"{image_file} holds {len(images):,} images but {label_file} {len(labels):,} labels:"
            " the two files do not belong together"
        )
    if labels.max(initial=0) >= len(classes):
        raise DataError(f"{label_file} has labels beyond 0..{len(classes) - 1}: not this data set")
    return ImageDataset(
        torch.from_numpy(images[:, None]), torch.from_numpy(labels).long(), classes, mean, std
    )


def _find(data_dir: Path, name: str, hint: str) -> Path:
    """``name.gz`` or ``name`` in data_dir, whichever exists (gzipped first)."""
    for path in (data_dir / f"{name}.gz", data_dir / name):
        if path.is_file():
            return path
    raise DataError(f"{data_dir / name}(.gz) is missing: {hint}")


def _read_into(f: IO[bytes], buffer: memoryview) -> int:
    """Fill ``buffer`` from the binary file ``f`` as far as it goes; the number of bytes read."""
    got = 0
    while got < len(buffer) and (n := f.readinto(buffer[got:])):
        got += n
    return got
