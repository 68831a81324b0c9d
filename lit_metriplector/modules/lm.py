"""Byte-level language modelling: next-byte cross-entropy, bits per byte, sampled continuations."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection

from ..metrics import BitsPerByte
from ..networks.generate import generate
from .base import MetriplectorTask


class LMTask(MetriplectorTask):
    """Next-byte prediction: cross-entropy, bits per byte, and sampled continuations.

    Batches are byte windows ``(B, T + 1)``: the network reads the first ``T`` bytes and predicts
    the last ``T``. ``predict`` continues each prompt batch ``(B, P)`` with sampled bytes through
    the network's ``init_state`` / ``step``.

    Args:
        temperature: sampling temperature of ``predict``; 0 is greedy.
        top_k: ``predict`` samples among the ``top_k`` likeliest bytes (None: all).
        max_new_bytes: bytes generated per prompt.
    """

    def __init__(
        self,
        *args: Any,
        temperature: float = 0.8,
        top_k: int | None = 40,
        max_new_bytes: int = 256,
        **kwargs: Any,
    ) -> None:
        self.temperature = temperature
        self.top_k = top_k
        self.max_new_bytes = max_new_bytes
        super().__init__(*args, **kwargs)

    def build_metrics(self) -> MetricCollection:
        return MetricCollection({"bpb": BitsPerByte()})

    def split_batch(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        return batch[:, :-1], batch[:, 1:]

    def compute_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.flatten(0, -2).float(), target.flatten())

    def predict_step(self, batch: Tensor, batch_idx: int, dataloader_idx: int = 0) -> dict:
        out = generate(self.network, batch, self.max_new_bytes, self.temperature, self.top_k)
        return {"prompt": batch, "generated": out[:, batch.shape[1] :]}
