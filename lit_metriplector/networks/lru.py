"""Diagonal linear-recurrence baseline (LRU / Mamba style): the Metriplector LM without physics.

Each block runs ``C`` complex states per position with an input-dependent step, as Mamba does
with its ``Delta``, and the input normalisation of the LRU (Orvieto et al. 2023)::

    h_t = a_t h_{t-1} + sqrt(1 - |a_t|^2) (u_t + i v_t),    a_t = exp((-nu + i theta) dt_t)

with learned decay ``nu > 0`` and frequency ``theta > 0`` per state, and ``u, v, dt =
softplus(.)`` linear in the (LayerNormed) input. There are no oscillators: no rest points, no
momenta, no energies; the readout is linear in ``(Re h, Im h)``, gated by ``silu`` of the input
(as Mamba's output gate), and followed by the same gated MLP, width, state size, initial
spectrum and residual layout as ``MetriplectorLM``, so that the comparison isolates the physics.
Training runs the recurrence in parallel through the core's ``linear_recurrence``; generation
(``init_state`` / ``step``) carries ``(layers, B, states, 2)``: O(1) per byte.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import DynamicsReport, ledger_dtype, linear_recurrence
from .layers import GatedMLP, gpt2_init, log_uniform


class RecurrentBlock(nn.Module):
    """``x + W_out(Re h, Im h) * silu(W_g x)``, then ``x + mlp(x)``, both pre-LayerNorm."""

    def __init__(
        self,
        width: int,
        states: int,
        mlp_ratio: float,
        dt_init: float,
        frequency_range: tuple[float, float],
        timescale_range: tuple[float, float],
        chunk: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.states, self.chunk = states, chunk
        self.norm1 = nn.LayerNorm(width)
        self.inputs = nn.Linear(width, 3 * states)  # input (real, imaginary) and step per state
        self.gate = nn.Linear(width, width, bias=False)
        self.log_frequency = nn.Parameter(log_uniform(states, *frequency_range))
        self.log_decay = nn.Parameter(-log_uniform(states, *timescale_range))  # nu = 1 / time
        self.dt_bias = math.log(math.expm1(dt_init))
        self.out = nn.Linear(2 * states, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = GatedMLP(width, int(mlp_ratio * width), dropout)
        self.dropout = nn.Dropout(dropout)

    def recurrence(self, h: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``a_t`` and ``b_t`` (real and imaginary parts) of every position of the normalised
        input ``h``, in ``dtype``."""
        u, v, dt = self.inputs(h).to(dtype).split(self.states, dim=-1)
        dt = F.softplus(dt + self.dt_bias)
        decay = self.log_decay.exp().to(dtype) * dt
        angle = self.log_frequency.exp().to(dtype) * dt
        modulus = torch.exp(-decay)
        norm = torch.sqrt(-torch.expm1(-2 * decay))  # sqrt(1 - |a|^2)
        return modulus * torch.cos(angle), modulus * torch.sin(angle), norm * u, norm * v

    def update(self, x: Tensor, h: Tensor, real: Tensor, imag: Tensor) -> Tensor:
        y = self.out(torch.cat([real, imag], -1).to(x.dtype)) * F.silu(self.gate(h))
        x = x + self.dropout(y)
        return x + self.mlp(self.norm2(x))

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm1(x)
        ar, ai, br, bi = self.recurrence(h, ledger_dtype(x.dtype))
        return self.update(x, h, *linear_recurrence((ar, ai), (br, bi), self.chunk))

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One position ``x`` ``(B, D)`` from the states ``(B, C, 2)``."""
        h = self.norm1(x)
        ar, ai, br, bi = self.recurrence(h, state.dtype)
        real = ar * state[..., 0] - ai * state[..., 1] + br
        imag = ar * state[..., 1] + ai * state[..., 0] + bi
        return self.update(x, h, real, imag), torch.stack([real, imag], -1)


class LinearRecurrentLM(nn.Module):
    """Next-byte logits ``(B, T, vocab_size)`` for byte sequences ``(B, T)``, any ``T``.

    Args:
        vocab_size: number of distinct tokens (256 for bytes).
        width: embedding width.
        layers: recurrent blocks.
        states: complex states per block.
        mlp_ratio: hidden width of the gated MLP relative to ``width``.
        dt_init: initial step ``dt`` per byte.
        frequency_range: initial frequencies ``theta`` are log-uniform in this range.
        timescale_range: initial decay times ``1 / nu`` are log-uniform in this range (those of
            ``MetriplectorLM``'s modes, ``2 / gamma``).
        chunk: steps per chunk of the parallel scan (speed only).
        dropout: dropout on the embeddings and the residual branches.
        tie_weights: share the embedding with the output layer.
    """

    def __init__(
        self,
        vocab_size: int = 256,
        width: int = 192,
        layers: int = 4,
        states: int = 192,
        mlp_ratio: float = 2.0,
        dt_init: float = 1.0,
        frequency_range: tuple[float, float] = (0.01, math.pi),
        timescale_range: tuple[float, float] = (2.0, 2000.0),
        chunk: int = 16,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        self.states, self.vocab_size = states, vocab_size
        self.embedding = nn.Embedding(vocab_size, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            RecurrentBlock(
                width, states, mlp_ratio, dt_init, frequency_range, timescale_range, chunk, dropout
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        residual = (proj for block in self.blocks for proj in (block.out, block.mlp.down))
        gpt2_init(self, residual, layers)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, T, vocab_size)`` of bytes ``x`` ``(B, T)``; no physics, no reports."""
        x = self.dropout(self.embedding(x))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)), []

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Every state zero: ``(layers, batch_size, states, 2)`` (real and imaginary parts)."""
        dtype = dtype or ledger_dtype(self.head.weight.dtype)
        device = device or self.head.weight.device
        shape = (len(self.blocks), batch_size, self.states, 2)
        return torch.zeros(shape, device=device, dtype=dtype)

    def step(self, idx: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, vocab_size)`` of the byte after ``idx`` ``(B,)``, and the next state."""
        x = self.dropout(self.embedding(idx))
        states = []
        for block, h in zip(self.blocks, state, strict=True):
            x, h = block.step(x, h)
            states.append(h)
        return self.head(self.norm(x)), torch.stack(states)
