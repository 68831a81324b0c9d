"""DataModules: mazes, byte-level text, Sudoku and images."""

from .images import (
    Augmentation,
    CIFAR10DataModule,
    CIFAR100DataModule,
    FashionMNISTDataModule,
    ImageDataModule,
)
from .maze import MazeDataModule
from .sudoku import SudokuDataModule
from .text import ByteTextDataModule

__all__ = [
    "Augmentation",
    "ByteTextDataModule",
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "MazeDataModule",
    "SudokuDataModule",
]
