"""LightningModules, one per task, on a shared base."""

from .base import MetriplectorTask
from .maze import MazeTask

__all__ = ["MazeTask", "MetriplectorTask"]
