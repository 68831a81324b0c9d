"""Task networks in plain torch (no Lightning)."""

from .deepthinking import DeepThinkingNetwork
from .gpt import GPT
from .images import ImageMetriplector
from .lm import MetriplectorLM
from .lru import LinearRecurrentLM
from .maze import MazeNetwork
from .modern_gpt import ModernGPT
from .rrn import RecurrentRelationalNetwork
from .sudoku import SudokuNetwork
from .wrn import DepthwiseTwin, WideResNet

__all__ = [
    "DeepThinkingNetwork",
    "DepthwiseTwin",
    "GPT",
    "ImageMetriplector",
    "LinearRecurrentLM",
    "MazeNetwork",
    "MetriplectorLM",
    "ModernGPT",
    "RecurrentRelationalNetwork",
    "SudokuNetwork",
    "WideResNet",
]
