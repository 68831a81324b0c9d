"""Task networks in plain torch (no Lightning)."""

from .maze import MazeNetwork

__all__ = ["MazeNetwork"]
