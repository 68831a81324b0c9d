"""Metrics for per-site predictions: F1 over path sites, exact match per board, and whether a
maze's prediction is a shortest path."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from ..datasets.mazes import Channel, distances


class PathF1(Metric):
    """F1 of the predicted path sites, pooled over all sites of all mazes (micro average).

    Args:
        threshold: logits above it mark a site as on the path.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        pred, true = logits > self.threshold, target > 0.5
        self.tp += (pred & true).sum()
        self.fp += (pred & ~true).sum()
        self.fn += (~pred & true).sum()

    def compute(self) -> Tensor:
        denominator = 2 * self.tp + self.fp + self.fn
        return (2 * self.tp / denominator.clamp_min(1)).float()


class ExactMatch(Metric):
    """Fraction of samples whose every site is predicted correctly.

    Args:
        threshold: logits above it mark a site as positive (binary targets). Ignored for class
            predictions (``logits`` with one more dimension than ``target``), which take argmax.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        if logits.dim() == target.dim() + 1:
            pred = logits.argmax(1)
        else:
            pred, target = logits > self.threshold, target > 0.5
        self.correct += (pred == target).flatten(1).all(1).sum()
        self.total += target.shape[0]

    def compute(self) -> Tensor:
        return self.correct.float() / self.total.clamp_min(1)


class OptimalPath(ExactMatch):
    """Fraction of mazes whose predicted sites are a shortest start-goal path: every one lies on
    some shortest path (``target`` marks them all), start and goal are among them, and they join
    the two. Any one of several tied shortest paths passes, and so do their union and anything
    between; a longer path, a broken one or a stray site fails. (Within the shortest paths'
    sites every edge joins consecutive distances from the start, so sites that join start and
    goal hold a path of the shortest length.)

    ``update(logits, target, maze)`` takes the encoded mazes ``(B, 3, H, W)`` too (for the
    endpoints); a ``MetricCollection`` passes ``maze`` only to metrics that take it. Counts
    and ``threshold`` as ``ExactMatch``'s, whose match it relaxes to any shortest path.
    """

    def update(self, logits: Tensor, target: Tensor, maze: Tensor) -> None:
        pred = logits > self.threshold
        inside = ~(pred & (target <= 0.5)).flatten(1).any(1)
        for on, ok, x in zip(pred.cpu().numpy(), inside.tolist(), maze.cpu().numpy(), strict=True):
            start, goal = (
                np.unravel_index(np.argmax(x[c]), on.shape) for c in (Channel.START, Channel.GOAL)
            )
            self.correct += int(ok and bool(on[start]) and distances(on, start)[goal] >= 0)
        self.total += pred.shape[0]
