"""Maze pathfinding: per-site path logits; F1 over path sites, exact match per maze and whether the
prediction is a shortest path."""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection

from ..datasets.mazes import decode, to_rgb
from ..metrics import ExactMatch, OptimalPath, PathF1
from .base import MetriplectorTask


class MazePrediction(TypedDict):
    """What ``MazeTask.predict_step`` returns, for ``MazeWriter``: inputs ``(B, 3, H, W)``,
    targets ``(B, H, W)`` and path probabilities ``(B, H, W)``."""

    input: Tensor
    target: Tensor
    probability: Tensor


class MazeTask(MetriplectorTask):
    """Binary segmentation of the path; batches are ``{"input": (B,3,H,W), "target": (B,H,W)}``.

    Arguments: those of ``MetriplectorTask`` (``network``, required: a ``MazeNetwork`` or any
    ``TaskNetwork``; ``optimizer``, ``lr_scheduler``, ``compile``, ``test_names``), and:

    Args:
        pos_weight: weight of path sites in the loss (paths are a minority of sites).
    """

    hp_metric = "val/f1"
    prediction_legend = "blue: path  orange: extra  purple: missed  green/red: start/goal"

    def __init__(self, *args: Any, pos_weight: float = 1.0, **kwargs: Any) -> None:
        self.pos_weight = pos_weight
        super().__init__(*args, **kwargs)

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"f1": PathF1(), "exact": ExactMatch(), "optimal": OptimalPath()})

    def metric_context(self, inputs: Tensor) -> dict[str, Tensor]:
        return {"maze": inputs}  # OptimalPath needs the endpoints

    def split_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return batch["input"], batch["target"]

    def compute_loss(self, output: Tensor, target: Tensor) -> Tensor:
        weight = output.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(output, target, pos_weight=weight)

    def predict_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> MazePrediction:
        logits = self(batch["input"])[0]
        return MazePrediction(
            input=batch["input"], target=batch["target"], probability=logits.sigmoid()
        )

    def render_prediction(self, batch: dict[str, Tensor], output: Tensor) -> Tensor:
        """Mazes with the predicted path against the target (extra and missed sites coloured):
        ``(B, 3, H, W)`` uint8, for the image logger."""
        images = []
        for x, y, logits in zip(
            batch["input"].cpu(), batch["target"].cpu(), output.cpu(), strict=True
        ):
            maze = decode(x.numpy())
            rgb = to_rgb(maze.open, maze.start, maze.goal, (logits > 0).numpy(), y.numpy() > 0.5)
            images.append(torch.from_numpy(np.ascontiguousarray(rgb)))
        return torch.stack(images)
