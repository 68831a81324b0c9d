"""DataModules: mazes, byte-level text and Sudoku."""

from .maze import MazeDataModule
from .sudoku import SudokuDataModule
from .text import ByteTextDataModule

__all__ = [
    "ByteTextDataModule",
    "MazeDataModule",
    "SudokuDataModule",
]
