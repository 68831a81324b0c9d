"""Callbacks: physics and learning-rate monitors, field images, prediction writers."""

from .checkpoint import RunCheckpoint
from .coupling import CouplingMonitor
from .image_writer import ImageWriter
from .images import FieldImageLogger
from .monitors import EnergyMonitor, EntropyMonitor, LearningRateLogger
from .probe import ProbeCallback
from .sudoku_writer import SudokuWriter
from .writers import MazeWriter, TextWriter

__all__ = [
    "CouplingMonitor",
    "EnergyMonitor",
    "EntropyMonitor",
    "FieldImageLogger",
    "ImageWriter",
    "LearningRateLogger",
    "MazeWriter",
    "ProbeCallback",
    "RunCheckpoint",
    "SudokuWriter",
    "TextWriter",
]
