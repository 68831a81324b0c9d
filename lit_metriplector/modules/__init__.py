"""LightningModules, one per task, on a shared base."""

from .base import MetriplectorTask
from .lm import LMTask
from .maze import MazeTask
from .sudoku import SudokuTask

__all__ = [
    "LMTask",
    "MazeTask",
    "MetriplectorTask",
    "SudokuTask",
]
