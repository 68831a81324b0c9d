"""Labelled image data sets as in-memory uint8 tensors: CIFAR-10/100 from the official archives
(``cifar``), Fashion-MNIST and MNIST from IDX files (``mnist``), and what they share (``base``).
Plain torch, no Lightning; items are ``{"input": uint8 (C, H, W), "target": long}``."""

from .base import ImageDataset, file_md5, train_val_split
from .cifar import (
    CIFAR10,
    CIFAR100,
    CifarSpec,
    RestrictedUnpickler,
    download_file,
    load_cifar10,
    load_cifar100,
    load_pickle,
)
from .mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    MNIST_CLASSES,
    MNIST_MEAN,
    MNIST_STD,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "MNIST_CLASSES",
    "MNIST_MEAN",
    "MNIST_STD",
    "CifarSpec",
    "ImageDataset",
    "RestrictedUnpickler",
    "download_file",
    "file_md5",
    "load_cifar10",
    "load_cifar100",
    "load_fashion_mnist",
    "load_mnist",
    "load_pickle",
    "read_idx",
    "train_val_split",
]
