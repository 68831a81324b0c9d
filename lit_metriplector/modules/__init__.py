"""LightningModules, one per task, on a shared base."""

from .base import MetriplectorTask
from .classification import ClassificationTask
from .lm import LMTask
from .maze import MazeTask
from .sudoku import SudokuTask

__all__ = [
    "ClassificationTask",
    "LMTask",
    "MazeTask",
    "MetriplectorTask",
    "SudokuTask",
]
