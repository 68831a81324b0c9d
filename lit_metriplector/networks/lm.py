"""Metriplector byte language model (DESIGN.md §3): the full branch, physical time = position.

Each layer holds ``C`` damped oscillators (the modes, the fields of the layer). Byte ``t``
configures a source ``rho_t`` (through the rest point ``rho_t / omega^2`` where it holds the mode,
normalised by ``drive_gain``) and a step ``dt_t`` per mode, held constant over the step::

    dphi/dt = pi,    dpi/dt = -omega^2 phi - gamma pi + rho_t,    ds/dt = gamma pi^2

with learned frequency ``Omega > 0`` and friction ``gamma >= 0`` per mode and
``omega^2 = Omega^2 + gamma^2/4``. This is the core's ``System`` with one site, ``mass2 =
omega^2``, ``source = rho``, ``gamma = gamma``: energies and the readout come from there.

Exact propagator. ``M = [[0, 1], [-omega^2, -gamma]]`` has eigenvalues ``lam = -gamma/2 +- i
Omega`` and eigenvectors ``(1, lam)``, so a real state is ``(phi, pi) = w (1, lam) + c.c.``::

    phi = 2 Re w,    pi = 2 Re(lam w),    w = phi/2 - i (pi + gamma phi/2) / (2 Omega)

The source shifts the rest point to ``phi* = rho/omega^2, pi* = 0``, i.e. ``w* = phi*/2 (1 - i
gamma/(2 Omega))``, and ``d(w - w*)/dt = lam (w - w*)``. Over a step of length ``dt``::

    w_t = a_t w_{t-1} + (1 - a_t) w*_t,    a_t = exp(lam dt_t),    |a_t| = exp(-gamma dt_t/2) <= 1

``lam`` is fixed per mode, so every step is a scalar complex affine map: training runs it over the
whole sequence at once (``linear_recurrence``), generation one byte at a time (``step``) with O(1)
state per layer. Complex numbers are carried as (real, imaginary) pairs of real tensors: complex
``exp`` is ~14x slower on CPU.

Readout per position and mode: the energy density ``T00`` and Lagrangian ``L`` (the core's
``stress_energy`` of the one-site system) in units of ``omega^2``, plus ``phi`` and ``pi /
omega``; a projection back to the width; then a gated MLP. Pre-LayerNorm residual blocks; causal
by construction.

Diagnostics (``forward(idx, diagnostics=True)``) run the dynamics in float64 and report per
layer the ledgers ``H``, ``S`` (heat ``int gamma pi^2``, in closed form) and the work ``W`` of the
source switches, so that ``H + S - W`` is conserved to rounding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Chain1D, DenseGraph, Diagnostics, RolloutReport, State, System
from ..core.system import ledger_dtype

Complex = tuple[Tensor, Tensor]  # (real part, imaginary part)


def cmul(x: Complex, y: Complex) -> Complex:
    return x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0]


def cadd(x: Complex, y: Complex) -> Complex:
    return x[0] + y[0], x[1] + y[1]


def mass2(frequency: Tensor, friction: Tensor) -> Tensor:
    """``omega^2 = Omega^2 + gamma^2/4``: the stiffness whose damped oscillation has frequency
    ``Omega``."""
    return frequency**2 + 0.25 * friction**2


def eigenvalue(frequency: Tensor, friction: Tensor) -> Complex:
    """``lam = -gamma/2 + i Omega``."""
    return -0.5 * friction, frequency


def to_eigen(phi: Tensor, pi: Tensor, frequency: Tensor, friction: Tensor) -> Complex:
    """``w = phi/2 - i (pi + gamma phi/2) / (2 Omega)``, the inverse of ``from_eigen``."""
    return 0.5 * phi, -(pi + 0.5 * friction * phi) / (2 * frequency)


def from_eigen(w: Complex, frequency: Tensor, friction: Tensor) -> tuple[Tensor, Tensor]:
    """``phi = 2 Re w``, ``pi = 2 Re(lam w) = -gamma Re w - 2 Omega Im w``."""
    return 2 * w[0], -friction * w[0] - 2 * frequency * w[1]


def fixed_point(rest: Tensor, frequency: Tensor, friction: Tensor) -> Complex:
    """``w* = phi*/2 (1 - i gamma / (2 Omega))``: ``to_eigen`` of the rest point ``phi* =
    rho/omega^2``, ``pi* = 0`` where source ``rho`` holds the mode."""
    return 0.5 * rest, (-0.25 * friction / frequency) * rest


def propagator(dt: Tensor | float, frequency: Tensor, friction: Tensor) -> tuple[Complex, Complex]:
    """``a = exp(lam dt)`` and ``1 - a``, the latter without cancellation for ``|lam dt| << 1``
    (slow modes would otherwise lose most digits of their input in float32)."""
    decay = torch.expm1(-0.5 * friction * dt)  # |a| - 1
    half = 0.5 * frequency * dt
    sin, cos = torch.sin(half), torch.cos(half)  # half angles: two transcendentals, not three
    versine = 2 * sin**2  # 1 - cos(Omega dt)
    a = ((1 + decay) * (1 - versine), (1 + decay) * 2 * sin * cos)
    return a, (versine - decay * (1 - versine), -a[1])


def drive_gain(dt: Tensor | float, frequency: Tensor, friction: Tensor) -> Tensor:
    """``sqrt(1 - |a|^2) / |1 - a|`` at step ``dt``: with rest points scaled by it, a mode driven
    by uncorrelated ones moves with their amplitude whatever its memory (LRU's normalisation).
    Without it long-lived resonant modes build amplitudes ~ ``(gamma dt)^-1/2``, their energies
    swamp the readout, and training is much slower (3.64 against 2.94 bits/byte after 1M bytes)."""
    _, complement = propagator(dt, frequency, friction)
    return torch.sqrt(-torch.expm1(-friction * dt) / (complement[0] ** 2 + complement[1] ** 2))


def dissipation(offset: Complex, dt: Tensor, frequency: Tensor, friction: Tensor) -> Tensor:
    """Heat ``int_0^dt gamma pi^2`` of one step that starts ``offset = w - w*`` from rest.

    With ``p = lam offset``, ``pi(tau) = 2 Re(p exp(lam tau))``, whose square integrates to::

        2 omega^2 |offset|^2 (1 - exp(-gamma dt)) + gamma Re[lam offset^2 (exp(2 lam dt) - 1)]

    (``|lam|^2 = omega^2``). Non-negative; the clamp only removes rounding.
    """
    lam = eigenvalue(frequency, friction)
    decay = torch.expm1(-friction * dt)  # exp(-gamma dt) - 1
    angle = 2 * frequency * dt
    change = (  # exp(2 lam dt) - 1, without cancellation
        decay * torch.cos(angle) - 2 * torch.sin(0.5 * angle) ** 2,
        (1 + decay) * torch.sin(angle),
    )
    modulus2 = offset[0] ** 2 + offset[1] ** 2
    oscillating = cmul(cmul(lam, cmul(offset, offset)), change)[0]
    heat = -2 * mass2(frequency, friction) * modulus2 * decay + friction * oscillating
    return heat.clamp_min(0)


def _scan(a: Complex, b: Complex, chunk: int) -> Complex:
    """``w_t = a_t w_{t-1} + b_t`` along axis 1 from ``w_0 = 0``, without autograd.

    Sequential inside chunks of ``chunk`` steps (all chunks at once), then the state at each
    chunk's end is carried into the next chunk (one chunk at a time). On CPU this beats a
    log-depth Hillis-Steele scan 2.5x and a plain loop 1.5x; every |a| <= 1, so it is stable.
    """
    steps = a[0].shape[1]
    length = min(chunk, steps)
    pad = -steps % length
    if pad:  # trailing a = b = 0 steps leave the earlier ones alone
        a, b = ([F.pad(x, [0, 0] * (x.dim() - 2) + [0, pad]) for x in z] for z in (a, b))
    split = (a[0].shape[0], -1, length, *a[0].shape[2:])  # (B, chunks, length, ...)
    a = tuple(x.reshape(split) for x in a)
    w = [x.reshape(split).clone() for x in b]  # becomes w, from rest at each chunk's start
    p = [x.clone() for x in a]  # becomes the product of a since each chunk's start
    for j in range(1, length):
        step = (a[0][:, :, j], a[1][:, :, j])
        w_j = cmul(step, (w[0][:, :, j - 1], w[1][:, :, j - 1]))
        p_j = cmul(step, (p[0][:, :, j - 1], p[1][:, :, j - 1]))
        for part in range(2):
            w[part][:, :, j] += w_j[part]
            p[part][:, :, j] = p_j[part]
    for k in range(1, w[0].shape[1]):
        carried = cmul((p[0][:, k], p[1][:, k]), (w[0][:, k - 1, -1:], w[1][:, k - 1, -1:]))
        for part in range(2):
            w[part][:, k] += carried[part]
    return tuple(x.flatten(1, 2)[:, :steps] for x in w)


class LinearRecurrence(torch.autograd.Function):
    """``w_t = a_t w_{t-1} + b_t`` with its adjoint, itself a recurrence run backwards in time:
    ``g_t = dl/dw_t + conj(a_{t+1}) g_{t+1}``, ``dl/db_t = g_t``, ``dl/da_t = g_t conj(w_{t-1})``.
    Nothing of the forward loop is kept for autograd: memory is that of ``a`` and ``w``."""

    @staticmethod
    def forward(ctx, ar: Tensor, ai: Tensor, br: Tensor, bi: Tensor, chunk: int):
        w = _scan((ar, ai), (br, bi), chunk)
        ctx.save_for_backward(ar, ai, *w)
        ctx.chunk = chunk
        return w

    @staticmethod
    def backward(ctx, gr: Tensor, gi: Tensor):
        ar, ai, wr, wi = ctx.saved_tensors
        after = (_shift(ar, -1).flip(1), -_shift(ai, -1).flip(1))  # conj(a_{t+1}), reversed
        g = _scan(after, (gr.flip(1), gi.flip(1)), ctx.chunk)
        g = (g[0].flip(1), g[1].flip(1))
        da = cmul(g, (_shift(wr, 1), -_shift(wi, 1)))
        return da[0], da[1], g[0], g[1], None


def _shift(x: Tensor, k: int) -> Tensor:
    """``x`` moved ``k`` steps later along axis 1 (earlier if negative), zero-filled."""
    pad = [0, 0] * (x.dim() - 2) + ([k, 0] if k > 0 else [0, -k])
    return F.pad(x, pad)[:, :-k] if k > 0 else F.pad(x, pad)[:, -k:]


def linear_recurrence(a: Complex, b: Complex, chunk: int = 16) -> Complex:
    """``w_t = a_t w_{t-1} + b_t`` along axis 1 of ``(B, T, ...)`` from ``w_0 = 0``."""
    return LinearRecurrence.apply(*(x.contiguous() for x in (*a, *b)), chunk)


def mode_system(source: Tensor, frequency: Tensor, friction: Tensor) -> System:
    """The modes as the core's system: one site, ``C`` fields, no conductance. Leading axes of
    ``source`` ``(..., C)`` become the batch; fields go through ``_sites`` alike."""
    modes = source.shape[-1]
    return System(
        DenseGraph(1),
        kappa=source.new_zeros(1, 1),
        mass2=mass2(frequency, friction).view(modes, 1),
        source=_sites(source),
        gamma=friction.view(modes, 1),
    )


def _sites(x: Tensor) -> Tensor:
    """``(..., C)`` -> ``(N, C, 1)``: one-site fields for the core."""
    return x.reshape(-1, x.shape[-1], 1)


def energy_density(system: System, phi: Tensor, pi: Tensor) -> tuple[Tensor, Tensor]:
    """``T00 = pi^2/2 + V`` and ``L = pi^2/2 - V`` of fields ``(..., C)``: the core's
    ``stress_energy`` of a one-site system, whose gradient terms vanish; skipping them makes
    the readout 2.5x cheaper. ``V`` is the core's potential."""
    kinetic = 0.5 * pi**2
    potential = system.potential(_sites(phi)).view_as(phi)
    return kinetic + potential, kinetic - potential


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

    def coefficients(self, rest: Tensor, dt: Tensor) -> tuple[Complex, Complex]:
        """The affine step ``w -> a w + b`` with ``b = (1 - a) w*``."""
        frequency, friction = self.constants(rest.dtype)
        a, complement = propagator(dt, frequency, friction)
        return a, cmul(complement, fixed_point(rest, frequency, friction))

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

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, RolloutReport | None]:
        # float32 dynamics under autocast; float64 for the ledgers of diagnostics (float32
        # ledgers drift by ~1e-6 of H, which would hide real errors)
        dtype = torch.float64 if diagnostics else ledger_dtype(x.dtype)
        rest, dt = self.configure(x, dtype)
        a, b = self.coefficients(rest, dt)
        w = linear_recurrence(a, b, self.chunk)
        report = self.report(w, rest, dt) if diagnostics else None
        return self.update(x, w, rest), report

    def step(self, x: Tensor, w: Complex) -> tuple[Tensor, Complex]:
        rest, dt = self.configure(x, w[0].dtype)
        a, b = self.coefficients(rest, dt)
        w = cadd(cmul(a, w), b)
        return self.update(x, w, rest), w

    @torch.no_grad()
    def report(self, w: Complex, rest: Tensor, dt: Tensor) -> RolloutReport:
        """Ledgers of the rollout: ``H`` after each step, the heat ``S`` and the work ``W`` done
        by switching sources (``-(rho_t - rho_{t-1}) . phi_{t-1}``), so ``H + S - W`` is
        conserved."""
        frequency, friction = self.constants(rest.dtype)
        omega2 = mass2(frequency, friction)
        rho = omega2 * rest
        phi, pi = from_eigen(w, frequency, friction)
        star = fixed_point(rest, frequency, friction)
        offset = (_shift(w[0], 1) - star[0], _shift(w[1], 1) - star[1])  # w_{t-1} - w*_t
        s = dissipation(offset, dt, frequency, friction).sum(-1)
        work = -((rho - _shift(rho, 1)) * _shift(phi, 1)).sum(-1)
        batch, steps = phi.shape[:2]
        hamiltonian = mode_system(rho, frequency, friction).hamiltonian(_sites(phi), _sites(pi))

        def history(x: Tensor) -> Tensor:  # (B, T) per step -> (T + 1, B) from rest
            return F.pad(x.T, [0, 0, 1, 0])

        entropy = history(s).cumsum(0)
        hamiltonian = history(hamiltonian.view(batch, steps))
        ledger = Diagnostics(hamiltonian, hamiltonian + entropy, entropy, history(work).cumsum(0))
        system = System(
            Chain1D(steps),
            kappa=rho.new_zeros(1, 1, 1, steps),
            mass2=omega2.view(1, -1, 1),
            source=rho.transpose(1, 2),
            gamma=friction.view(1, -1, 1),
        )
        state = State(phi.transpose(1, 2), pi.transpose(1, 2), s)
        return RolloutReport(entropy[-1], system, state, ledger=ledger)


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
        self.modes = modes
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
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        # GPT-2: residual branches shrink with depth so the residual stream's variance does not
        # grow with it.
        for block in self.blocks:
            for proj in (block.proj, block.mlp.down):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * layers))
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, idx: Tensor, diagnostics: bool = False) -> tuple[Tensor, list]:
        """Logits ``(B, T, vocab_size)`` and, if asked, one ``RolloutReport`` per block."""
        x = self.dropout(self.embedding(idx))
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
