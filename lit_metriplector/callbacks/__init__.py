"""Callbacks: physics monitors, field images, prediction writers."""

from .images import FieldImageLogger
from .monitors import EnergyMonitor, EntropyMonitor
from .probe import ProbeCallback
from .writers import MazeWriter, TextWriter

__all__ = [
    "EnergyMonitor",
    "EntropyMonitor",
    "FieldImageLogger",
    "MazeWriter",
    "ProbeCallback",
    "TextWriter",
]
