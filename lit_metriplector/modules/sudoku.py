"""Sudoku: cross-entropy on the blank cells at every iteration; cell accuracy, exact and valid
boards per stage and per difficulty; predicted boards as text and pictures."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection

from ..datasets.sudoku import render_board
from ..metrics.sudoku import (
    BoardExact,
    BoardValid,
    CellAccuracy,
    final_logits,
    predicted_board,
    sudoku_target,
)
from .base import MetriplectorTask


class SudokuPrediction(TypedDict):
    """What ``SudokuTask.predict_step`` returns, for ``SudokuWriter``: ``(B, 81)`` puzzles,
    solutions and predicted boards (givens kept), and the probability of each predicted digit."""

    puzzle: Tensor
    solution: Tensor
    prediction: Tensor
    confidence: Tensor


def blank_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy over the blank cells of every iteration: ``logits`` ``(B, T, 81, 9)``
    (or ``(B, 81, 9)``), ``target`` ``(B, 2, 81)`` (``sudoku_target``). Every iteration weighs
    the same."""
    if logits.dim() == 3:
        logits = logits[:, None]
    puzzle, solution = target[:, 0], target[:, 1]
    blank = (puzzle == 0)[:, None].expand(-1, logits.shape[1], -1)  # (B, T, 81)
    labels = (solution - 1).clamp_min(0)[:, None].expand_as(blank)
    loss = F.cross_entropy(logits.float().flatten(0, 2), labels.flatten(), reduction="none")
    weight = blank.flatten().float()
    return (loss * weight).sum() / weight.sum().clamp_min(1)


class SudokuTask(MetriplectorTask):
    """Sudoku solving; batches are ``{"input": (B, 81), "target": (B, 81)}`` (puzzles with
    0 = blank, solutions).

    The network maps puzzles ``(B, 81)`` to the logits of every iteration ``(B, T, 81, 9)``
    (``SudokuNetwork``, ``RecurrentRelationalNetwork``); the loss is the cross-entropy on the
    blanks at every iteration (plus the network's ``penalty()``, if it has one), the metrics
    score the last iteration: ``cell_accuracy`` (blanks
    right), ``exact`` (boards equal to the solution) and ``valid`` (complete boards keeping the
    givens with every row, column and box a permutation of 1..9).

    Arguments: those of ``MetriplectorTask`` (``network``, required: a ``SudokuNetwork``,
    ``RecurrentRelationalNetwork`` or any ``TaskNetwork``; ``optimizer``, ``lr_scheduler``,
    ``compile``, ``test_names``).
    """

    hp_metric = "val/exact"

    def build_metrics(self) -> MetricCollection:
        return MetricCollection(
            {"cell_accuracy": CellAccuracy(), "exact": BoardExact(), "valid": BoardValid()}
        )

    def split_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return batch["input"], sudoku_target(batch["input"], batch["target"])

    def compute_loss(self, output: Tensor, target: Tensor) -> Tensor:
        loss = blank_cross_entropy(output, target)
        penalty = getattr(self.network, "penalty", None)  # networks with a prior of their own
        return loss if penalty is None else loss + penalty()

    def predict_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> SudokuPrediction:
        logits = final_logits(self(batch["input"])[0])
        return SudokuPrediction(
            puzzle=batch["input"],
            solution=batch["target"],
            prediction=predicted_board(logits, batch["input"]),
            confidence=logits.float().softmax(-1).amax(-1),
        )

    def render_prediction(self, batch: dict[str, Tensor], output: Tensor) -> Tensor:
        """Boards with the predicted digits, wrong ones red: ``(B, 3, H, W)`` uint8, for the
        image logger."""
        boards = predicted_board(output, batch["input"]).cpu()
        images = [
            torch.from_numpy(np.ascontiguousarray(render_board(p, q, s, scale=1)))
            for p, q, s in zip(batch["input"].cpu(), boards, batch["target"].cpu(), strict=True)
        ]
        return torch.stack(images).permute(0, 3, 1, 2).contiguous()
