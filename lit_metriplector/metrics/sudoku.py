"""Sudoku metrics: cell accuracy on the blanks, exact boards, valid boards.

Each metric is updated with ``(logits, target)``: ``logits`` ``(B, 81, 9)`` or the logits of
every iteration ``(B, T, 81, 9)`` (the last one is scored), and ``target`` ``(B, 2, 81)``: the
puzzles (0 = blank) stacked on their solutions (``sudoku_target``). The predicted board keeps
the givens and fills every blank with its most likely digit (``predicted_board``); nothing else
touches it.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from ..datasets.sudoku.structure import is_valid_solution


def sudoku_target(puzzle: Tensor, solution: Tensor) -> Tensor:
    """``(B, 2, 81)``: the puzzles stacked on their solutions, what the metrics compare with."""
    return torch.stack([puzzle.long(), solution.long()], 1)


def final_logits(logits: Tensor) -> Tensor:
    """The last iteration's logits ``(B, 81, 9)`` of ``(B, 81, 9)`` or ``(B, T, 81, 9)``."""
    return logits[:, -1] if logits.dim() == 4 else logits


def predicted_board(logits: Tensor, puzzle: Tensor) -> Tensor:
    """``(B, 81)`` digits: the givens, and on every blank the argmax digit of ``logits``."""
    digits = final_logits(logits).argmax(-1) + 1
    puzzle = puzzle.long()
    return torch.where(puzzle > 0, puzzle, digits)


class _SudokuMetric(Metric):
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("hits", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def score(self, board: Tensor, puzzle: Tensor, solution: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def update(self, logits: Tensor, target: Tensor) -> None:
        puzzle, solution = target[:, 0].long(), target[:, 1].long()
        hits, total = self.score(predicted_board(logits, puzzle), puzzle, solution)
        self.hits += hits
        self.total += total

    def compute(self) -> Tensor:
        return self.hits.float() / self.total.clamp_min(1)


class CellAccuracy(_SudokuMetric):
    """Fraction of blank cells filled with the solution's digit (givens are not counted)."""

    def score(self, board, puzzle, solution):
        blank = puzzle == 0
        return ((board == solution) & blank).sum(), blank.sum()


class BoardExact(_SudokuMetric):
    """Fraction of boards whose every blank is filled with the solution's digit."""

    def score(self, board, puzzle, solution):
        return (board == solution).all(-1).sum(), torch.tensor(board.shape[0])


class BoardValid(_SudokuMetric):
    """Fraction of boards that are complete, satisfy every row, column and box and keep the
    givens (``is_valid_solution``): a correct answer, even where it differs from the stored
    solution."""

    def score(self, board, puzzle, solution):
        return is_valid_solution(board, puzzle).sum(), torch.tensor(board.shape[0])


def iteration_scores(logits: Tensor, puzzle: Tensor, solution: Tensor) -> dict[str, Tensor]:
    """Scores after every iteration of ``logits`` ``(B, T, 81, 9)``: the fraction of blanks
    right (``cell_accuracy``), of exact boards (``exact``) and of valid boards (``valid``), each
    ``(T,)``: how the answer evolves with the number of iterations."""
    puzzle, solution = puzzle.long().to(logits.device), solution.long().to(logits.device)
    blank = puzzle == 0
    boards = torch.where(blank[:, None], logits.argmax(-1) + 1, puzzle[:, None])  # (B, T, 81)
    right = boards == solution[:, None]
    cell = (right & blank[:, None]).sum((0, 2)).float() / blank.sum().clamp_min(1)
    exact = right.all(-1).float().mean(0)
    valid = is_valid_solution(boards, puzzle[:, None].expand_as(boards)).float().mean(0)
    return {"cell_accuracy": cell, "exact": exact, "valid": valid}
