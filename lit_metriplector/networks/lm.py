"""Metriplector byte language model: the full branch, physical time = position (docs/physics.md,
"The language model").

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

Options (all off by default; off, the model, its parameters and its ``state_dict`` are as before):

- ``input_friction``: byte ``t`` also sets each mode's friction at its fixed stiffness
  ``omega^2``, ``gamma_t = 2 omega r_t`` with ``r_t = CRITICAL sigmoid(z_t + z_0)`` (``z_0``
  gives the learned ``gamma`` at zero input): step ``t`` holds the oscillator ``(Omega_t,
  gamma_t, rho_t)`` with ``Omega_t = sqrt(omega^2 - gamma_t^2/4)``, underdamped whatever the
  byte. With the byte's step ``dt_t`` this sets both how far a mode turns (``Omega_t dt_t``) and
  how much it keeps (``exp(-gamma_t dt_t/2)``). Its eigenvectors ``(1, lam_t)`` change with the
  byte, so each step is an exact real 2x2 affine map of ``(phi, pi)`` (``modulated_map``),
  scanned by ``matrix_recurrence``; the ledger is the core's ``modulated_rollout``. The stiffness
  stays fixed because switching it does work on the modes: with ``omega^2`` set per byte too,
  training diverged in its first steps (``H`` of a layer reached 1e23, parametric pumping), while
  a switch of friction does no work and every step lowers ``H`` about the rest point.
- ``conv``: a causal depthwise convolution of this many bytes (then SiLU) in front of ``configure``
  that drive the modes, as in Mamba; generation keeps the last ``conv - 1`` inputs per layer.
- ``coupling``: the read-out fields are a learned rotation of pairs of modes (angle per pair, 0
  at initialisation): fields ``phi = R phi_n``, ``pi = R pi_n`` of normal modes ``phi_n`` that
  are the scanned modes, i.e. the coupled system with stiffness ``R omega^2 R^T``, friction ``R
  gamma R^T`` and source ``R rho``; its energy densities (interference of the two modes of a
  pair) are read per field in units of ``(R omega^2 R^T)_aa``. The rotation is fixed in time, so
  the normal modes stay independent and the scan exact; ``H``, ``S`` and the work are invariant
  under it, so diagnostics are those of the normal modes. (The core's skew rotation ``G`` of the
  momenta does not commute with per-mode steps and is not offered.)
- ``gate``: the projected readout is gated by ``silu(W LayerNorm(x))`` before it joins the
  residual stream, as the LRU baseline's and Mamba's outputs are: the byte chooses which of the
  modes' energies it reads. Outside the physics (the modes and their ledger are unchanged).

Diagnostics (``forward(idx, diagnostics=True)``) rerun each layer's dynamics through the core's
exact integrator (``modulated_rollout``) in float64 and report its ledgers ``H``, ``S`` and the
work ``W`` of the switches, so that ``H + S - W`` is conserved to rounding.

Generation (``step``) precomputes the constants of every block once per set of weights (cached
until a parameter changes, under ``no_grad``), folds the drive gain, step bias and readout
factors into pre-transposed weights and runs the modes as complex numbers: 30 to 45 kernels per
layer and byte (at batch 1 their count, not their arithmetic, sets the speed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import (
    DynamicsReport,
    State,
    cmul,
    drive_gain,
    fixed_point,
    from_eigen,
    ledger_dtype,
    linear_recurrence,
    matrix_recurrence,
    mode_system,
    modulated_map,
    modulated_rollout,
    modulated_step,
    propagator,
    stiffness,
)
from .layers import GatedMLP, gpt2_init, log_uniform

# A byte's friction stays below this fraction of critical damping: Omega_t >= 0.045 omega keeps
# the closed-form heat well conditioned (it divides by Omega_t^2; at 1e-13 omega, bytes driven
# hard broke the float64 ledger by 1e40).
CRITICAL = 0.999


class CausalConv(nn.Conv1d):
    """Depthwise convolution over the last ``kernel`` positions of ``(B, T, D)`` (zeros before
    the first), and its step: one position ``(B, D)`` from the window of the previous
    ``kernel - 1`` inputs ``(B, kernel - 1, D)``."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__(width, width, kernel, groups=width)

    def forward(self, x: Tensor) -> Tensor:
        y = F.pad(x.transpose(1, 2), [self.kernel_size[0] - 1, 0])
        return super().forward(y).transpose(1, 2)

    def step(self, x: Tensor, window: Tensor) -> tuple[Tensor, Tensor]:
        seq = torch.cat([window, x[:, None]], 1)  # (B, kernel, D)
        return torch.einsum("bkd,dk->bd", seq, self.weight[:, 0]) + self.bias, seq[:, 1:]


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """``R x``: modes ``(2k, 2k + 1)`` of ``(..., C)`` rotated by the angle of pair ``k``."""
    pairs = x.unflatten(-1, (-1, 2))
    first, second = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([cos * first - sin * second, sin * first + cos * second], -1)
    return rotated.flatten(-2)


def selective(z: Tensor, omega: Tensor) -> tuple[Tensor, Tensor]:
    """The eigenvalue ``lam_t = (-gamma_t/2, Omega_t)`` of bytes whose friction logits are ``z``
    (with the offset of ``friction_constants``): ``gamma_t = 2 omega r``, ``r = CRITICAL
    sigmoid(z)``, at the mode's stiffness ``omega^2``: ``Omega_t^2 = omega^2 - gamma_t^2/4``,
    factored so that it keeps its digits near critical damping."""
    decay = torch.sigmoid(z) * omega * -CRITICAL
    return decay, torch.sqrt((omega + decay) * (omega - decay))


def friction_constants(frequency: Tensor, friction: Tensor) -> tuple[Tensor, Tensor]:
    """``omega`` and the logit offset that gives the learned ``gamma`` at ``z = 0``."""
    omega = stiffness(frequency, friction).sqrt()
    return omega, torch.logit((friction / (2 * CRITICAL * omega)).clamp(max=CRITICAL))


def rates(
    raw: Sequence[Tensor], frequency: Tensor, friction: Tensor, gain: Tensor, dt_bias: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rest point ``phi* = rho / omega^2``, step ``dt = softplus(W h + b)`` and the frequency
    and friction of the step, per position and mode, from the coefficients ``raw`` (rest, step
    and, with input-dependent friction, friction logits). The head sets where the source holds
    each mode (times the mode's ``drive_gain``) rather than the source itself, so every mode
    moves on the scale of the features whatever its stiffness and memory."""
    rest, dt = raw[0] * gain, F.softplus(raw[1] + dt_bias)
    if len(raw) == 3:
        omega, offset = friction_constants(frequency, friction)
        decay, frequency = selective(raw[2] + offset, omega)
        friction = -2 * decay
    return rest, dt, frequency, friction


def readout(
    phi: Tensor,
    pi: Tensor,
    rest: Tensor,
    omega2: Tensor,
    rotation: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """``(T00, L) / omega^2``, ``phi``, ``pi / omega`` per field: ``(..., 4C)``, each field in
    its natural units. ``T00 = pi^2/2 + V``, ``L = pi^2/2 - V`` with the core's potential ``V =
    omega^2 phi^2/2 - rho phi`` (``rho = omega^2 rest``: ``energy_density`` of the one-site
    ``mode_system``). With coupling (``rotation``), the fields are the rotated modes, ``V_a =
    phi_a (K phi)_a / 2 - rho_a phi_a`` with ``K = R omega^2 R^T``, in units of ``K_aa``."""
    if rotation is None:
        kinetic = 0.5 * pi**2 / omega2
        potential = phi * (0.5 * phi - rest)
        momentum = pi / omega2.sqrt()
        return torch.cat([kinetic + potential, kinetic - potential, phi, momentum], -1)
    k_phi = rotate_pairs(omega2 * phi, *rotation)
    source = rotate_pairs(omega2 * rest, *rotation)  # rho
    phi, pi = rotate_pairs(phi, *rotation), rotate_pairs(pi, *rotation)
    diagonal = _pair_diagonal(omega2, *rotation)  # K_aa
    kinetic = 0.5 * pi**2 / diagonal
    potential = (0.5 * k_phi - source) * phi / diagonal
    return torch.cat([kinetic + potential, kinetic - potential, phi, pi / diagonal.sqrt()], -1)


@dataclass
class StepConstants:
    """What ``OscillatorBlock.step`` needs of the parameters: the modes' constants in their
    precision, and the linear maps transposed (``(in, out)``: a batch-1 product is ~30% faster)
    with the drive gain, the step bias and the readout's fixed factors folded in."""

    frequency: Tensor  # Omega (C,)
    friction: Tensor  # gamma (C,)
    eigenvalue: Tensor  # complex (C,): lam = -gamma/2 + i Omega
    star: Tensor  # complex (C,): w* per unit rest point, 1/2 - i gamma / (4 Omega)
    chart: Tensor  # complex (C,): pi / omega = Re(2 lam / omega w)
    omega2: Tensor  # (C,)
    omega: Tensor  # (C,)
    rotation: tuple[Tensor, Tensor] | None  # (cos, sin) of the pair angles, with coupling
    # (D, kC) weight, with the rest columns times drive_gain; bias, with the step bias and the
    # friction logits' offset (friction_constants)
    coefficients: tuple[Tensor, Tensor]
    proj: tuple[Tensor, Tensor]  # (4C, D) weight acting on (p^2, q, Re w, p) (see step); bias
    gate: Tensor | None  # (D, D) with gate and conv; without conv the gate's columns are the
    # coefficients' last D (the same input: one product fewer per byte and layer)
    up: Tensor  # (D, 2H)
    down: Tensor  # (H, D)


class OscillatorBlock(nn.Module):
    """``x + proj(T(modes driven by x))``, then ``x + mlp(x)``, both pre-LayerNorm.

    ``forward`` runs a whole sequence ``(B, T, D)`` from rest; ``step`` one position ``(B, D)``
    from the eigen coordinates ``w`` (complex, ``(B, C)``) of the modes (and, with ``conv``, the
    window of its last inputs). Options: see the module docstring.
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
        input_friction: bool = False,
        conv: int = 0,
        coupling: bool = False,
        gate: bool = False,
    ) -> None:
        super().__init__()
        if coupling and modes % 2:
            raise ValueError(f"coupling rotates pairs of modes: modes must be even, got {modes}")
        if conv < 0:
            raise ValueError(f"conv must be >= 0, got {conv}")
        self.chunk, self.modes = chunk, modes
        self.input_friction = input_friction
        self.norm1 = nn.LayerNorm(width)
        self.conv = CausalConv(width, conv) if conv else None
        # source and step per mode, and the optional friction
        self.coefficients = nn.Linear(width, (2 + input_friction) * modes)
        # A spread of frequencies and damping times (log-uniform), as in S4D / LRU: each layer
        # sees the past at every scale from the last few bytes to far beyond the context.
        self.log_frequency = nn.Parameter(log_uniform(modes, *frequency_range))
        self.log_friction = nn.Parameter(math.log(2) - log_uniform(modes, *timescale_range))
        self.pair_angle = nn.Parameter(torch.zeros(modes // 2)) if coupling else None
        self.dt_init = dt_init
        self.dt_bias = math.log(math.expm1(dt_init))  # softplus(dt_bias) = dt_init
        self.proj = nn.Linear(4 * modes, width)
        self.gate = nn.Linear(width, width, bias=False) if gate else None
        self.norm2 = nn.LayerNorm(width)
        self.mlp = GatedMLP(width, int(mlp_ratio * width), dropout)
        self.dropout = nn.Dropout(dropout)
        self._cache: tuple[list, StepConstants] | None = None
        self._step_parameters: list[nn.Parameter] | None = None
        self._kernels: dict[str, Callable] | None = None

    def _apply(self, fn, recurse=True):  # conversions may replace the parameters
        self._cache = self._step_parameters = None
        return super()._apply(fn, recurse)

    def fuse(self, **options) -> None:
        """Compile the element-wise kernels of training (``rates``, ``modulated_map``, ``readout``)
        with ``torch.compile`` (``options``), each with its gradient fused into one loop."""
        kernels = (rates, modulated_map, readout)
        self._kernels = {k.__name__: torch.compile(k, dynamic=True, **options) for k in kernels}

    def kernel(self, function: Callable) -> Callable:
        """``function``, compiled after ``fuse``."""
        return function if self._kernels is None else self._kernels[function.__name__]

    @property
    def frequency(self) -> Tensor:
        return self.log_frequency.exp()

    @property
    def friction(self) -> Tensor:
        return self.log_friction.exp()

    @property
    def modulated(self) -> bool:
        """Whether the bytes set the friction (2x2 steps of ``(phi, pi)``)."""
        return self.input_friction

    def constants(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(Omega, gamma)`` in the precision of the dynamics."""
        return self.frequency.to(dtype), self.friction.to(dtype)

    def features(self, x: Tensor) -> Tensor:
        """What drives the modes: ``LayerNorm(x)``, through the causal convolution if any."""
        h = self.norm1(x)
        return h if self.conv is None else F.silu(self.conv(h))

    def drive(
        self, h: Tensor, frequency: Tensor, friction: Tensor, gain: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``rates`` of the coefficients of features ``h``."""
        raw = self.coefficients(h).to(frequency.dtype).split(self.modes, dim=-1)
        return self.kernel(rates)(raw, frequency, friction, gain, self.dt_bias)

    def configure(self, x: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``drive`` of a whole sequence ``x`` ``(B, T, D)`` in precision ``dtype``."""
        frequency, friction = self.constants(dtype)
        gain = drive_gain(self.dt_init, frequency, friction)
        return self.drive(self.features(x), frequency, friction, gain)

    def rotation(self, dtype: torch.dtype) -> tuple[Tensor, Tensor] | None:
        """``(cos, sin)`` of the pair angles with coupling, else None."""
        if self.pair_angle is None:
            return None
        angle = self.pair_angle.to(dtype)
        return angle.cos(), angle.sin()

    def update(self, x: Tensor, features: Tensor) -> Tensor:
        y = self.proj(features.to(x.dtype))
        if self.gate is not None:
            y = y * F.silu(self.gate(self.norm1(x)))
        x = x + self.dropout(y)
        return x + self.mlp(self.norm2(x))

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, DynamicsReport | None]:
        dtype = ledger_dtype(x.dtype)  # float32 dynamics under autocast
        rest, dt, frequency, friction = self.configure(x, dtype)
        if self.modulated:
            m, c = self.kernel(modulated_map)(rest, dt, frequency, friction)
            phi, pi = matrix_recurrence(m, c, self.chunk)
        else:  # fixed eigenvectors: a complex scalar per step, half the work
            a, complement = propagator(dt, frequency, friction)
            star = fixed_point(rest, frequency, friction)
            w = linear_recurrence(a, cmul(complement, star), self.chunk)
            phi, pi = from_eigen(w, frequency, friction)
        omega2 = stiffness(*self.constants(dtype))  # the bytes' friction keeps it
        features = self.kernel(readout)(phi, pi, rest, omega2, self.rotation(dtype))
        report = self.report(rest, dt, frequency, friction) if diagnostics else None
        return self.update(x, features), report

    # --- generation ---------------------------------------------------------------------------

    def step_constants(self, dtype: torch.dtype) -> StepConstants:
        """The parameters' share of ``step`` for modes in precision ``dtype``, computed once and
        kept while no parameter changes (under ``no_grad``; with autograd on they are recomputed,
        so that gradients reach the parameters)."""
        if self._step_parameters is None:  # module attribute lookups would cost ~20 us a byte
            self._step_parameters = [p for p in self.parameters() if p is not None]
        key = [dtype] + [(p.data_ptr(), p._version) for p in self._step_parameters]
        cache = not torch.is_grad_enabled()
        if cache and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        frequency, friction = self.constants(dtype)
        omega2 = stiffness(frequency, friction)
        eigenvalue = torch.complex(-0.5 * friction, frequency)
        weight, bias = self.coefficients.weight, self.coefficients.bias
        gain = drive_gain(self.dt_init, frequency, friction).to(weight.dtype)
        scale = torch.ones(weight.shape[0], dtype=weight.dtype, device=weight.device)
        scale = torch.cat([gain, scale[self.modes :]])
        shift = torch.zeros_like(bias)
        shift[self.modes : 2 * self.modes] = self.dt_bias
        if self.input_friction:
            shift[2 * self.modes :] = friction_constants(frequency, friction)[1]
        proj = self.proj.weight
        rotation = self.rotation(dtype)
        if rotation is None:  # proj(T, L, phi, p) as a map of (p^2, q, m, p), see step
            energy, lagrangian, phi, momentum = proj.split(self.modes, dim=1)
            k_q, k_m = (0.5, 1) if self.modulated else (2, 2)  # V / omega^2 = k_q q, phi = k_m m
            kinetic = 0.5 * (energy + lagrangian)
            if self.modulated:  # the features carry pi rather than p = pi / omega
                kinetic, momentum = (
                    kinetic / omega2.to(proj.dtype),
                    momentum / omega2.sqrt().to(proj.dtype),
                )
            proj = torch.cat([kinetic, k_q * (energy - lagrangian), k_m * phi, momentum], 1)
        weight, bias = (weight * scale[:, None]).T, bias * scale + shift
        gate = None if self.gate is None else self.gate.weight.T
        if gate is not None and self.conv is None:
            weight, bias = (
                torch.cat([weight, gate], 1),
                torch.cat([bias, bias.new_zeros(len(gate))]),
            )
            gate = None
        constants = StepConstants(
            frequency=frequency,
            friction=friction,
            eigenvalue=eigenvalue,
            star=torch.complex(0.5 * torch.ones_like(frequency), -0.25 * friction / frequency),
            chart=2 * eigenvalue / omega2.sqrt(),
            omega2=omega2,
            omega=omega2.sqrt(),
            rotation=rotation,
            coefficients=(weight.contiguous(), bias),
            proj=(proj.T.contiguous(), self.proj.bias),
            gate=None if gate is None else gate.contiguous(),
            up=self.mlp.up.weight.T.contiguous(),
            down=self.mlp.down.weight.T.contiguous(),
        )
        if cache:
            self._cache = (key, constants)
        return constants

    def step(
        self, x: Tensor, modes: Tensor, window: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """One byte: the block's output ``(B, D)``, the modes after it ``(B, C, 2)`` and the
        convolution's window (None without ``conv``). The modes are ``(phi, pi)`` when modulated,
        else the real and imaginary parts of their eigen coordinates ``w``.

        The same dynamics and readout as ``forward``, in fewer and larger operations (their count
        bounds the speed at batch 1). Modulated: ``modulated_step``. Otherwise ``w <- w* + a (w -
        w*)`` with ``a = exp(lam dt)``. With ``p = pi / omega``, ``m = phi`` and ``q = m (m - 2
        rest)`` (modulated) or ``m = Re w = phi / 2`` and ``q = m (m - rest)``, the features
        ``(T00, L) / omega^2 = p^2/2 +- V / omega^2`` and ``phi`` are linear in ``(p^2, q, m)``
        (``V / omega^2 = q / 2`` or ``2 q``), so the projection acts on those (modulated: on
        ``pi^2`` and ``pi``, the ``1 / omega`` of ``p`` folded into it)."""
        c = self.step_constants(modes.dtype)
        norm1, norm2, n = self.norm1, self.norm2, self.modes
        h = normed = F.layer_norm(x, norm1.normalized_shape, norm1.weight, norm1.bias, norm1.eps)
        if self.conv is not None:
            h, window = self.conv.step(h, window)
            h = F.silu(h)
        out = torch.addmm(c.coefficients[1], h, c.coefficients[0])  # (rest, dt[, z][, gate])
        raw = out.to(c.frequency.dtype)
        rest, dt = raw[:, :n], F.softplus(raw[:, n : 2 * n])
        if self.modulated:
            lam = selective(raw[:, 2 * n : 3 * n], c.omega)
            phi, pi = modulated_step(*modes.unbind(-1), rest, dt, lam)
            modes = torch.stack([phi, pi], -1)
            m, p = phi, pi  # the projection carries the 1 / omega of p
            q = m * torch.sub(m, rest, alpha=2)
        else:
            w = torch.view_as_complex(modes)
            star = rest * c.star
            w = star + torch.exp(dt * c.eigenvalue) * (w - star)
            modes = torch.view_as_real(w)
            m, p = w.real, (w * c.chart).real
            q = m * (m - rest)
        if c.rotation is None:
            features = torch.cat([p * p, q, m, p], -1)
        else:
            if not self.modulated:
                phi, pi = 2 * m, p * c.omega
            features = readout(phi, pi, rest, c.omega2, c.rotation)
        y = torch.addmm(c.proj[1], features.to(x.dtype), c.proj[0])
        if self.gate is not None:
            y = y * F.silu(out[:, -x.shape[1] :] if c.gate is None else normed @ c.gate)
        x = x + (self.dropout(y) if self.training else y)  # a call saved per byte and layer
        h = F.layer_norm(x, norm2.normalized_shape, norm2.weight, norm2.bias, norm2.eps)
        gate, value = (h @ c.up).chunk(2, dim=-1)
        y = (F.silu(gate) * value) @ c.down
        return x + (self.dropout(y) if self.training else y), modes, window

    @torch.no_grad()
    def report(
        self, rest: Tensor, dt: Tensor, frequency: Tensor, friction: Tensor
    ) -> DynamicsReport:
        """The same dynamics, from rest, through the core's exact integrator in float64 (float32
        ledgers drift by ~1e-6 of ``H``, which would hide real errors): its ledgers, the final
        state and the system of the last byte."""

        def per_step(x: Tensor) -> Tensor:  # (B, T, C) -> (T, B, C, 1)
            return x.double().expand_as(rest).transpose(0, 1).unsqueeze(-1)

        frequencies, frictions = per_step(frequency), per_step(friction)
        sources = stiffness(frequencies, frictions) * per_step(rest)
        system = mode_system(torch.zeros_like(sources[0, ..., 0]), *self.constants(torch.float64))
        zero = torch.zeros_like(system.source)
        final, _, ledger = modulated_rollout(
            system,
            State(zero, zero, zero[:, 0]),
            per_step(dt),
            sources,
            frequencies if self.modulated else None,
            frictions if self.modulated else None,
            diagnostics=True,
        )
        produced = ledger.entropy[-1] - ledger.entropy[0]
        last = system.replace(
            source=sources[-1],
            mass2=stiffness(frequencies[-1], frictions[-1]),
            gamma=frictions[-1],
        )
        return DynamicsReport(produced, last, final, ledger)


def _pair_diagonal(omega2: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Diagonal of ``R diag(omega2) R^T`` for pair rotations ``R``."""
    pairs = omega2.unflatten(-1, (-1, 2))
    first, second = pairs[..., 0], pairs[..., 1]
    c2, s2 = cos**2, sin**2
    return torch.stack([c2 * first + s2 * second, s2 * first + c2 * second], -1).flatten(-2)


class MetriplectorLM(nn.Module):
    """Next-byte logits ``(B, T, vocab_size)`` for byte sequences ``(B, T)``, any ``T``.

    Generation (``init_state`` / ``step``) carries each layer's modes, ``(layers, B, modes, 2)``
    (``(phi, pi)`` with ``input_friction``, else the real and imaginary part of their eigen
    coordinates) and, with ``conv``, the last ``conv - 1`` inputs of each layer's convolution:
    O(1) per byte, no cache that grows.

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
        input_friction: each byte also sets each mode's friction (see the module docstring).
        conv: kernel of a causal depthwise convolution in front of the modes (0: none).
        coupling: read the modes out through a learned rotation of pairs (``modes`` even).
        gate: gate the readout by ``silu(W LayerNorm(x))``, as the LRU baseline does.
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
        input_friction: bool = False,
        conv: int = 0,
        coupling: bool = False,
        gate: bool = False,
    ) -> None:
        super().__init__()
        self.modes, self.vocab_size, self.conv = modes, vocab_size, conv
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
                input_friction=input_friction,
                conv=conv,
                coupling=coupling,
                gate=gate,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        residual = (proj for block in self.blocks for proj in (block.proj, block.mlp.down))
        gpt2_init(self, residual, layers)
        if tie_weights:
            self.head.weight = self.embedding.weight
        self._head: tuple[tuple, Tensor] | None = None

    def compile(self, **options) -> None:
        """Compile each block's element-wise kernels in place (``OscillatorBlock.fuse``; options
        as ``torch.compile``'s) rather than the whole network: on one CPU thread training the
        selective model runs 1.6x faster; the whole network compiled took 163 s and gained
        nothing (the scans' autograd functions split its graph)."""
        for block in self.blocks:
            block.fuse(**options)

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
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Every mode at rest: ``(layers, batch_size, modes, 2)`` zeros in the precision of the
        dynamics (``dtype``: float32 or float64); with ``conv``, also the empty windows
        ``(layers, batch_size, conv - 1, width)`` in the parameters' precision."""
        weight = self.head.weight
        dtype = dtype or ledger_dtype(weight.dtype)
        device = device or weight.device
        shape = (len(self.blocks), batch_size, self.modes, 2)
        modes = torch.zeros(shape, device=device, dtype=dtype)
        if not self.conv:
            return modes
        shape = (len(self.blocks), batch_size, self.conv - 1, weight.shape[1])
        return modes, torch.zeros(shape, device=device, dtype=weight.dtype)

    def step(
        self, idx: Tensor, state: Tensor | tuple[Tensor, Tensor]
    ) -> tuple[Tensor, Tensor | tuple[Tensor, Tensor]]:
        """Logits ``(B, vocab_size)`` of the byte after ``idx`` ``(B,)``, and the next state."""
        modes, windows = state if self.conv else (state, None)
        x = F.embedding(idx, self.embedding.weight)
        x = self.dropout(x) if self.training else x
        new_modes, new_windows = [], []
        layers = zip(
            self.blocks,
            modes.unbind(0),
            [None] * len(self.blocks) if windows is None else windows.unbind(0),
            strict=True,
        )
        for block, modes_i, window in layers:
            x, modes_i, window = block.step(x, modes_i, window)
            new_modes.append(modes_i)
            new_windows.append(window)
        modes = torch.stack(new_modes)
        norm = self.norm
        x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        logits = x @ self.head_transposed()
        return logits, modes if windows is None else (modes, torch.stack(new_windows))

    def head_transposed(self) -> Tensor:
        """The output layer's weight as ``(width, vocab)``, kept while it does not change (under
        ``no_grad``)."""
        weight = self.head.weight
        key = (weight.data_ptr(), weight._version)
        if torch.is_grad_enabled():
            return weight.T
        if self._head is None or self._head[0] != key:
            self._head = (key, weight.T.contiguous())
        return self._head[1]
