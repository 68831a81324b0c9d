"""torchmetrics for the tasks."""

from .bits import BitsPerByte
from .path import ExactMatch, PathF1

__all__ = ["BitsPerByte", "ExactMatch", "PathF1"]
