"""Callbacks: physics and learning-rate monitors, field images, prediction writers."""

from .checkpoint import RunCheckpoint
from .images import FieldImageLogger
from .monitors import EnergyMonitor, EntropyMonitor, LearningRateLogger
from .probe import ProbeCallback
from .writers import MazeWriter, TextWriter

__all__ = [
    "EnergyMonitor",
    "EntropyMonitor",
    "FieldImageLogger",
    "LearningRateLogger",
    "MazeWriter",
    "ProbeCallback",
    "RunCheckpoint",
    "TextWriter",
]
