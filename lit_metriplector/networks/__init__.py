"""Task networks in plain torch (no Lightning)."""

from .deepthinking import DeepThinkingNetwork
from .gpt import GPT
from .lm import MetriplectorLM
from .maze import MazeNetwork
from .rrn import RecurrentRelationalNetwork
from .sudoku import SudokuNetwork

__all__ = [
    "DeepThinkingNetwork",
    "GPT",
    "MazeNetwork",
    "MetriplectorLM",
    "RecurrentRelationalNetwork",
    "SudokuNetwork",
]
