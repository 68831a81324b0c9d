"""The constraint structure of Sudoku: units, peers, per-kind masks and the validity check.

Cells are numbered 0..80 in row-major order: cell ``i`` is in row ``i // 9``, column ``i % 9``
and box ``3 * (row // 3) + column // 3``. A unit is a row, a column or a box (27 in all, 9 cells
each); two distinct cells are peers when they share a unit, so each cell has 8 + 8 + 4 = 20.
"""

from __future__ import annotations

import numpy as np
import torch

ROW = np.arange(81) // 9
COLUMN = np.arange(81) % 9
BOX = 3 * (ROW // 3) + COLUMN // 3

#: (27, 9) cell indices of the units: rows 0..8, then columns, then boxes.
UNITS = np.concatenate(
    [np.flatnonzero(kind == k)[None] for kind in (ROW, COLUMN, BOX) for k in range(9)]
)


def cell_name(i: int) -> str:
    """``r{row}c{column}``, 1-based, the usual way to name a cell in messages."""
    return f"r{i // 9 + 1}c{i % 9 + 1}"


def constraint_masks() -> dict[str, torch.Tensor]:
    """Per-kind peer masks ``{"rows", "columns", "boxes"}``, each (81, 81) bool, self excluded.

    A row mask has 8 partners per cell and so do the others; rows and columns are disjoint,
    while a box shares 2 partners of each cell with its row and 2 with its column.
    """
    off_diagonal = ~np.eye(81, dtype=bool)
    return {
        name: torch.from_numpy((kind[:, None] == kind[None, :]) & off_diagonal)
        for name, kind in (("rows", ROW), ("columns", COLUMN), ("boxes", BOX))
    }


def peers() -> torch.Tensor:
    """(81, 81) bool, True where two distinct cells share a row, column or box (20 per cell)."""
    masks = constraint_masks()
    return masks["rows"] | masks["columns"] | masks["boxes"]


def is_valid_solution(
    grid: torch.Tensor | np.ndarray, puzzle: torch.Tensor | np.ndarray | None = None
) -> torch.Tensor | np.ndarray:
    """Whether each grid is complete, satisfies every constraint and keeps the givens.

    Args:
        grid: (81,) or (B, 81) digits; blanks (0) or values outside 1..9 make a grid invalid.
        puzzle: the puzzles of the same shape (0 = blank); when given, a grid must agree with
            every given.

    Returns:
        bool of shape () or (B,), a torch tensor for torch input, else a numpy array.
    """
    as_numpy = not isinstance(grid, torch.Tensor)
    g = torch.as_tensor(grid).long()
    units = g[..., torch.from_numpy(UNITS)].sort(dim=-1).values  # (..., 27, 9)
    # A unit holds 1..9 exactly once iff its sorted digits are 1..9.
    valid = (units == torch.arange(1, 10, device=g.device)).flatten(-2).all(-1)
    if puzzle is not None:
        p = torch.as_tensor(puzzle, device=g.device).long()
        valid = valid & ((p == 0) | (p == g)).all(-1)
    return valid.cpu().numpy() if as_numpy else valid
