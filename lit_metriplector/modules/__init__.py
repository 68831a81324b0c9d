"""LightningModules, one per task, on a shared base."""

from .base import MetriplectorTask
from .lm import LMTask
from .maze import MazeTask

__all__ = ["LMTask", "MazeTask", "MetriplectorTask"]
