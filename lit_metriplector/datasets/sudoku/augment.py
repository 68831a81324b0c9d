"""Validity-preserving augmentation of Sudoku batches in torch, and a torch Dataset over arrays."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def _permutations(
    shape: tuple[int, ...], n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Independent uniform random permutations of ``range(n)``, shape ``(*shape, n)``."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(*shape, n, generator=generator, device=where).argsort(-1).to(device)


def augment(
    puzzles: torch.Tensor,
    solutions: torch.Tensor,
    generator: torch.Generator | None = None,
    relabel: bool = True,
    permute_rows: bool = False,
    permute_bands: bool = False,
    permute_columns: bool = False,
    permute_stacks: bool = False,
    transpose: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random validity-preserving transform per sample, applied alike to puzzle and solution.

    Relabelling permutes the digits 1..9 (blanks stay 0); it uses nothing about the board's
    geometry. The geometric transforms (rows within a band, bands, columns within a stack,
    stacks, transposition) are generators of the symmetry group of the constraint structure:
    training on them tells the model which cell permutations leave rows, columns and boxes
    intact, a mild injection of that structure. The zero-injection configuration therefore uses
    relabelling only.

    Args:
        puzzles: (B, 81) digits, 0 = blank.
        solutions: (B, 81) digits 1..9.
        generator: the random source (on any device; results move to the boards' device).
        relabel: permute the digits.
        permute_rows: permute the rows inside each band of three.
        permute_bands: permute the three bands of rows.
        permute_columns: permute the columns inside each stack of three.
        permute_stacks: permute the three stacks of columns.
        transpose: transpose with probability 1/2.

    Returns:
        (puzzles, solutions), (B, 81) long.
    """
    puzzles, solutions = puzzles.long(), solutions.long()
    batch, device = puzzles.shape[0], puzzles.device

    def lines(within: bool, groups: bool) -> torch.Tensor:
        """(B, 9) source line of each target line, for rows or for columns."""
        inner = (
            _permutations((batch, 3), 3, generator, device)
            if within
            else torch.arange(3, device=device).expand(batch, 3, 3)
        )
        outer = (
            _permutations((batch,), 3, generator, device)
            if groups
            else torch.arange(3, device=device).expand(batch, 3)
        )
        return (3 * outer[:, :, None] + inner).reshape(batch, 9)

    if permute_rows or permute_bands or permute_columns or permute_stacks or transpose:
        rows = lines(permute_rows, permute_bands)
        columns = lines(permute_columns, permute_stacks)
        source = rows[:, :, None] * 9 + columns[:, None, :]  # (B, 9, 9) cell read by each cell
        if transpose:
            where = generator.device if generator is not None else torch.device("cpu")
            flip = (torch.rand(batch, generator=generator, device=where) < 0.5).to(device)
            source = torch.where(flip[:, None, None], source.transpose(1, 2), source)
        source = source.reshape(batch, 81)
        puzzles, solutions = puzzles.gather(1, source), solutions.gather(1, source)
    if relabel:
        digits = _permutations((batch,), 9, generator, device) + 1
        mapping = torch.cat([torch.zeros(batch, 1, dtype=torch.long, device=device), digits], 1)
        puzzles, solutions = mapping.gather(1, puzzles), mapping.gather(1, solutions)
    return puzzles, solutions


class SudokuDataset(Dataset):
    """Puzzles and solutions as ``{"input": (81,) long, "target": (81,) long}`` samples, with
    0 = blank in the input and digits 1..9 in the target."""

    def __init__(self, puzzles: np.ndarray | torch.Tensor, solutions: np.ndarray | torch.Tensor):
        self.puzzles = torch.as_tensor(puzzles).long()
        self.solutions = torch.as_tensor(solutions).long()
        if self.puzzles.ndim != 2 or self.puzzles.shape[1] != 81:
            raise ValueError(f"puzzles have shape {tuple(self.puzzles.shape)}, expected (N, 81)")
        if self.solutions.shape != self.puzzles.shape:
            raise ValueError(
                f"solutions have shape {tuple(self.solutions.shape)}, "
                f"puzzles {tuple(self.puzzles.shape)}"
            )
        if len(self.solutions) and not ((self.solutions >= 1) & (self.solutions <= 9)).all():
            raise ValueError("solutions must hold digits 1..9 only")

    def __len__(self) -> int:
        return len(self.puzzles)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input": self.puzzles[index], "target": self.solutions[index]}
