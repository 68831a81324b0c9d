"""Metriplector byte language model (DESIGN.md §3): the full branch, physical time = position.

Each layer holds ``C`` damped oscillators (the modes, the fields of the layer; ``core/modes.py``
has their physics and exact integrator). Byte ``t`` configures a source ``rho_t`` (through the
rest point ``rho_t / omega^2`` where it holds the mode, normalised by ``drive_gain``) and a step
``dt_t`` per mode, held constant over the step::

    dphi/dt = pi,    dpi/dt = -omega^2 phi - gamma pi + rho_t,    ds/dt = gamma pi^2

with learned frequency ``Omega > 0`` and friction ``gamma >= 0`` per mode and ``omega^2 = Omega^2
+ gamma^2/4``: the core's ``mode_system``, one site with ``C`` fields. Every step is exact and an
affine map of the modes' eigen coordinates ``w`` (``exact_map``): training runs the whole sequence
at once (``linear_recurrence``), generation one byte at a time (``step``) with O(1) state per
layer.

Readout per position and mode: the energy density ``T00`` and Lagrangian ``L`` (the core's
``stress_energy`` of the one-site system) in units of ``omega^2``, plus ``phi`` and ``pi /
omega``; a projection back to the width; then a gated MLP. Pre-LayerNorm residual blocks; causal
by construction.

Diagnostics (``forward(idx, diagnostics=True)``) rerun each layer's dynamics through the core's
exact integrator (``rollout(..., method="exact")``) in float64 and report its ledgers ``H``,
``S`` and the work ``W`` of the source switches, so that ``H + S - W`` is conserved to rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import DynamicsReport, State, rollout
from ..core.modes import drive_gain, energy_density, exact_map, from_eigen, mass2, mode_system
from ..core.scan import Complex, cadd, cmul, linear_recurrence
from ..core.system import ledger_dtype
from .gpt import gpt2_init


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


class OscillatorBlock(nn.Module):
    """``x + proj(T(modes driven by x))``, then ``x + mlp(x)``, both pre-LayerNorm.

    ``forward`` runs a whole sequence ``(B, T, D)`` from rest; ``step`` one position ``(B, D)``
    from the eigen coordinates ``w`` ``(B, C)`` of the modes.
    """

    def __init__(
        self,
        width: int,
        modes: int,
        mlp_ratio: float,
        dt_init: float,
        frequency_range: tuple[float, float],
        timescale_range: tuple[float, float],
        chunk: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.chunk = chunk
        self.norm1 = nn.LayerNorm(width)
        self.heads = nn.Linear(width, 2 * modes)  # source and step per mode
        # A spread of frequencies and damping times (log-uniform), as in S4D / LRU: each layer
        # sees the past at every scale from the last few bytes to far beyond the context.
        self.log_frequency = nn.Parameter(_log_uniform(modes, *frequency_range))
        self.log_friction = nn.Parameter(math.log(2) - _log_uniform(modes, *timescale_range))
        self.dt_init = dt_init
        self.dt_bias = math.log(math.expm1(dt_init))  # softplus(dt_bias) = dt_init
        self.proj = nn.Linear(4 * modes, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = GatedMLP(width, int(mlp_ratio * width), dropout)
        self.dropout = nn.Dropout(dropout)

    @property
    def frequency(self) -> Tensor:
        return self.log_frequency.exp()

    @property
    def friction(self) -> Tensor:
        return self.log_friction.exp()

    def constants(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(Omega, gamma)`` in the precision of the dynamics."""
        return self.frequency.to(dtype), self.friction.to(dtype)

    def configure(self, x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Rest point ``phi* = rho / omega^2`` and step ``dt = softplus(W x + b)`` per position
        and mode. The head sets where the source holds each mode (times the mode's
        ``drive_gain``) rather than the source itself, so every mode moves on the scale of the
        features whatever its stiffness and memory."""
        rest, step = self.heads(self.norm1(x)).to(dtype).chunk(2, dim=-1)
        rest = rest * drive_gain(self.dt_init, *self.constants(dtype))
        return rest, F.softplus(step + self.dt_bias)

    def read(self, w: Complex, rest: Tensor) -> Tensor:
        """``(T00, L) / omega^2``, ``phi``, ``pi / omega`` per mode: ``(..., 4C)``, each mode in
        its natural units."""
        frequency, friction = self.constants(rest.dtype)
        phi, pi = from_eigen(w, frequency, friction)
        omega2 = mass2(frequency, friction)
        system = mode_system(omega2 * rest, frequency, friction)
        t00, lagrangian = energy_density(system, phi, pi)
        return torch.cat([t00 / omega2, lagrangian / omega2, phi, pi / omega2.sqrt()], dim=-1)

    def update(self, x: Tensor, w: Complex, rest: Tensor) -> Tensor:
        x = x + self.dropout(self.proj(self.read(w, rest).to(x.dtype)))
        return x + self.mlp(self.norm2(x))

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, DynamicsReport | None]:
        rest, dt = self.configure(x, ledger_dtype(x.dtype))  # float32 dynamics under autocast
        w = linear_recurrence(*exact_map(rest, dt, *self.constants(rest.dtype)), self.chunk)
        report = self.report(rest, dt) if diagnostics else None
        return self.update(x, w, rest), report

    def step(self, x: Tensor, w: Complex) -> tuple[Tensor, Complex]:
        rest, dt = self.configure(x, w[0].dtype)
        a, b = exact_map(rest, dt, *self.constants(rest.dtype))
        w = cadd(cmul(a, w), b)
        return self.update(x, w, rest), w

    @torch.no_grad()
    def report(self, rest: Tensor, dt: Tensor) -> DynamicsReport:
        """The same dynamics, from rest, through the core's exact integrator in float64 (float32
        ledgers drift by ~1e-6 of ``H``, which would hide real errors): its ledgers, the final
        state and the system with the last byte's source."""
        frequency, friction = self.constants(torch.float64)
        sources = (mass2(frequency, friction) * rest.double()).transpose(0, 1)  # (T, B, C)
        system = mode_system(torch.zeros_like(sources[0]), frequency, friction)
        zero = torch.zeros_like(system.source)
        state = State(zero, zero, zero[:, 0])
        final, ledger = rollout(
            system,
            state,
            dt.double().transpose(0, 1).unsqueeze(-1),  # one step size per step, mode and sample
            len(sources),
            method="exact",
            sources=sources.unsqueeze(-1),
            diagnostics=True,
        )
        produced = ledger.entropy[-1] - ledger.entropy[0]
        last = system.replace(source=sources[-1, ..., None])
        return DynamicsReport(produced, last, final, ledger)


def _log_uniform(n: int, low: float, high: float) -> Tensor:
    """``log`` of ``n`` values spread log-uniformly over ``[low, high]``, in random order."""
    return torch.empty(n).uniform_(math.log(low), math.log(high))


class MetriplectorLM(nn.Module):
    """Next-byte logits ``(B, T, vocab_size)`` for byte sequences ``(B, T)``, any ``T``.

    Generation (``init_state`` / ``step``) carries each layer's modes, ``(layers, 2, B, modes)``
    (real and imaginary part of their eigen coordinates): O(1) per byte, no cache that grows.

    Args:
        vocab_size: number of distinct tokens (256 for bytes).
        width: embedding width.
        layers: oscillator blocks.
        modes: damped oscillators (fields) per block.
        mlp_ratio: hidden width of the gated MLP relative to ``width``.
        dt_init: initial step ``dt`` per byte, and the nominal step of the drive gain (see
            ``drive_gain``).
        frequency_range: initial frequencies ``Omega`` are log-uniform in this range (radians
            per unit time; ``pi`` is the fastest a sampled oscillation can be at ``dt = 1``).
        timescale_range: initial damping times ``2 / gamma`` (in units of time; bytes at
            ``dt = 1``) are log-uniform in this range.
        chunk: steps per chunk of the parallel scan (speed only; results are the same).
        dropout: dropout on the embeddings and the residual branches.
        tie_weights: share the embedding with the output layer.
    """

    def __init__(
        self,
        vocab_size: int = 256,
        width: int = 192,
        layers: int = 4,
        modes: int = 192,
        mlp_ratio: float = 2.0,
        dt_init: float = 1.0,
        frequency_range: tuple[float, float] = (0.01, math.pi),
        timescale_range: tuple[float, float] = (2.0, 2000.0),
        chunk: int = 16,
        dropout: float = 0.0,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        self.modes, self.vocab_size = modes, vocab_size
        self.embedding = nn.Embedding(vocab_size, width)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            OscillatorBlock(
                width,
                modes,
                mlp_ratio,
                dt_init,
                frequency_range,
                timescale_range,
                chunk,
                dropout,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        residual = (proj for block in self.blocks for proj in (block.proj, block.mlp.down))
        gpt2_init(self, residual, layers)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, T, vocab_size)`` of bytes ``x`` ``(B, T)`` and, if asked, one
        ``DynamicsReport`` per block."""
        x = self.dropout(self.embedding(x))
        reports = []
        for block in self.blocks:
            x, report = block(x, diagnostics)
            if report is not None:
                reports.append(report)
        return self.head(self.norm(x)), reports

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Every mode at rest: ``(layers, 2, batch_size, modes)`` zeros."""
        dtype = dtype or ledger_dtype(self.head.weight.dtype)
        device = device or self.head.weight.device
        return torch.zeros(len(self.blocks), 2, batch_size, self.modes, device=device, dtype=dtype)

    def step(self, idx: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(B, vocab_size)`` of the byte after ``idx`` ``(B,)``, and the next state."""
        x = self.dropout(self.embedding(idx))
        modes = []
        for block, w in zip(self.blocks, state, strict=True):
            x, w = block.step(x, (w[0], w[1]))
            modes.append(torch.stack(w))
        return self.head(self.norm(x)), torch.stack(modes)
