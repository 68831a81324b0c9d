"""Task networks in plain torch (no Lightning)."""

from .deepthinking import DeepThinkingNetwork
from .gpt import GPT
from .maze import MazeNetwork

__all__ = ["DeepThinkingNetwork", "GPT", "MazeNetwork"]
