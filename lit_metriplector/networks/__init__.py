"""Task networks in plain torch (no Lightning)."""

from .deepthinking import DeepThinkingNetwork
from .gpt import GPT
from .images import ImageConfig, ImageMetriplector
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
    "ImageConfig",
    "ImageMetriplector",
    "LinearRecurrentLM",
    "MazeNetwork",
    "MetriplectorLM",
    "ModernGPT",
    "RecurrentRelationalNetwork",
    "SudokuNetwork",
    "WideResNet",
]
