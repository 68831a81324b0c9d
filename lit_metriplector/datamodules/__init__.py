"""DataModules: mazes and byte-level text."""

from .maze import MazeDataModule
from .text import ByteTextDataModule

__all__ = ["ByteTextDataModule", "MazeDataModule"]
