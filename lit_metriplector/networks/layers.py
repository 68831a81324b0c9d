"""Building blocks shared by the task networks, one definition each; model files import them
from here and never from one another.

- from the core, re-exported: ``fast_asinh`` (the readout's ``asinh``) and ``pointwise`` (a 1x1
  convolution of image maps);
- image maps ``(B, C, H, W)``: ``Pointwise`` (a 1x1 convolution module), the pointwise
  feed-forward ``pointwise_mlp``, ``DropPath``, ``conv_stack``;
- sequences ``(B, T, D)``: ``GatedMLP`` (SwiGLU), ``gpt2_init``, ``log_uniform`` spectra, the
  key-value cache ``empty_cache``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import fast_asinh, pointwise

__all__ = [
    "DropPath",
    "GatedMLP",
    "Pointwise",
    "conv_stack",
    "empty_cache",
    "fast_asinh",
    "gpt2_init",
    "log_uniform",
    "pointwise",
    "pointwise_mlp",
]

# --- image maps -----------------------------------------------------------------------------------


class Pointwise(nn.Conv2d):
    """``nn.Conv2d`` with a 1x1 kernel, run by ``pointwise``."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return pointwise(x, self.weight, self.bias)


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample with probability ``p`` in training
    (and rescales the kept ones)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        keep = x.new_empty(x.shape[0], *[1] * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


def pointwise_mlp(width: int, ratio: float) -> nn.Sequential:
    """Pointwise feed-forward ``width -> ratio width -> width``."""
    hidden = max(1, round(width * ratio))
    return nn.Sequential(Pointwise(width, hidden), nn.GELU(), Pointwise(hidden, width))


def conv_stack(in_channels: int, width: int, layers: int, kernel_size: int = 3) -> nn.Sequential:
    """``layers`` same-padded convolutions, each followed by GELU."""
    modules: list[nn.Module] = []
    for i in range(layers):
        conv = nn.Conv2d(
            in_channels if i == 0 else width, width, kernel_size, padding=kernel_size // 2
        )
        modules += [conv, nn.GELU()]
    return nn.Sequential(*modules)


# --- sequences ------------------------------------------------------------------------------------


class GatedMLP(nn.Module):
    """SwiGLU: ``W_out (silu(W_gate x) * W_in x)``."""

    def __init__(self, width: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.up = nn.Linear(width, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.up(x).chunk(2, dim=-1)
        return self.dropout(self.down(F.silu(gate) * value))


def log_uniform(n: int, low: float, high: float) -> Tensor:
    """``log`` of ``n`` values spread log-uniformly over ``[low, high]``, in random order."""
    return torch.empty(n).uniform_(math.log(low), math.log(high))


KeysValues = tuple[Tensor, Tensor]


def empty_cache(
    embedding: Tensor,
    heads: int,
    layers: int,
    batch_size: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> list[KeysValues]:
    """Empty keys and values ``(B, heads, 0, head size)`` per layer, with the device and dtype of
    the token ``embedding`` weight unless given."""
    device = embedding.device if device is None else device
    dtype = embedding.dtype if dtype is None else dtype
    shape = (batch_size, heads, 0, embedding.shape[1] // heads)
    empty = torch.empty(shape, device=device, dtype=dtype)
    return [(empty, empty)] * layers


def gpt2_init(model: nn.Module, residual: Iterable[nn.Linear], layers: int) -> None:
    """GPT-2's initialisation: weights of linear maps and embeddings ``N(0, 0.02)``, biases zero,
    and the projections that end residual branches ``N(0, 0.02 / sqrt(2 layers))`` so the
    residual stream's variance does not grow with depth."""
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
    for proj in residual:
        nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * layers))
