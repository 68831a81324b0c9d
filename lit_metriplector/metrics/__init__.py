"""torchmetrics for the tasks, and scores of learned structure."""

from .bits import BitsPerByte
from .graph import graph_recovery, partition_units
from .path import ExactMatch, OptimalPath, PathF1
from .sudoku import BoardExact, BoardValid, CellAccuracy

__all__ = [
    "BitsPerByte",
    "BoardExact",
    "BoardValid",
    "CellAccuracy",
    "ExactMatch",
    "OptimalPath",
    "PathF1",
    "graph_recovery",
    "partition_units",
]
