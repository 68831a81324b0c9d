"""torchmetrics for the tasks, and scores of learned structure."""

from .bits import BitsPerByte
from .graph import graph_recovery
from .path import ExactMatch, PathF1

__all__ = ["BitsPerByte", "ExactMatch", "PathF1", "graph_recovery"]
