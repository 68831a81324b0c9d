"""Bits per byte: the mean next-byte cross-entropy in base 2."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric


class BitsPerByte(Metric):
    """Cross-entropy of next-byte predictions in bits, averaged over every predicted byte."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nats", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        """``logits``: ``(..., 256)``; ``target``: byte values ``(...)``."""
        loss = F.cross_entropy(logits.flatten(0, -2).float(), target.flatten(), reduction="sum")
        self.nats += loss.double()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return (self.nats / self.count.clamp_min(1) / math.log(2)).float()
