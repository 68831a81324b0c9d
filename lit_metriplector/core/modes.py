"""Linear damped modes and their exact integrator (docs/physics.md, "Linear damped modes").

A system whose sites and fields are independent linear oscillators (no conductance between sites,
diagonal or no channel coupling, no quartic term, no rotation, no mobility) evolves, per site and
field, as::

    dphi/dt = pi,    dpi/dt = -omega^2 phi - gamma pi + rho,    T0 ds/dt = gamma pi^2

with stiffness ``omega^2 = mass2 + W_aa`` and friction ``gamma``. An underdamped mode
(``omega^2 > gamma^2/4``) oscillates at ``Omega = sqrt(omega^2 - gamma^2/4)``: ``[[0, 1],
[-omega^2, -gamma]]`` has eigenvalues ``lam = -gamma/2 +- i Omega`` and eigenvectors ``(1,
lam)``, so a real state is ``(phi, pi) = w (1, lam) + c.c.``::

    phi = 2 Re w,    pi = 2 Re(lam w),    w = phi/2 - i (pi + gamma phi/2) / (2 Omega)

A source ``rho`` held over a step moves the rest point to ``phi* = rho/omega^2``, ``pi* = 0``,
i.e. ``w* = phi*/2 (1 - i gamma/(2 Omega))``, and ``d(w - w*)/dt = lam (w - w*)``. The step of
length ``dt`` is therefore exact::

    w' = a w + (1 - a) w*,    a = exp(lam dt),    |a| = exp(-gamma dt/2) <= 1

and a sequence of them is a linear recurrence, which ``core/scan.py`` runs over all steps at once
(``exact_rollout``), even with a source and a step size that change every step.

The functions take ``(Omega, gamma)`` rather than the system's ``(omega^2, gamma)``: near
critical damping, ``Omega`` recovered from ``omega^2`` loses most of its digits (in float32,
``Omega = 0.01``, ``gamma = 1`` keeps three). Complex numbers are (real, imaginary) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .lattice import DenseGraph
from .scan import Complex, Matrix, cadd, cmul, linear_recurrence, matrix_recurrence
from .system import Diagnostics, State, System


def stiffness(frequency: Tensor, friction: Tensor) -> Tensor:
    """``omega^2 = Omega^2 + gamma^2/4``: the stiffness whose damped oscillation has frequency
    ``Omega``."""
    return frequency**2 + 0.25 * friction**2


def damped_frequency(stiffness: Tensor, friction: Tensor) -> Tensor:
    """``Omega = sqrt(omega^2 - gamma^2/4)``, the inverse of ``stiffness`` (underdamped modes)."""
    return torch.sqrt(stiffness - 0.25 * friction**2)


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


def exact_map(
    rest: Tensor, dt: Tensor | float, frequency: Tensor, friction: Tensor
) -> tuple[Complex, Complex]:
    """The exact step as an affine map of the eigen coordinates, ``w -> a w + b``: ``a =
    exp(lam dt)``, ``b = (1 - a) w*`` for the rest point ``rest`` held over the step."""
    a, complement = propagator(dt, frequency, friction)
    return a, cmul(complement, fixed_point(rest, frequency, friction))


def modulated_map(
    rest: Tensor, dt: Tensor | float, frequency: Tensor, friction: Tensor
) -> tuple[Matrix, tuple[Tensor, Tensor]]:
    """The exact step of ``x = (phi, pi)`` as a real affine map ``x -> M x + c``, for modes whose
    ``(Omega, gamma)`` and so eigenvectors change from step to step (``from_eigen`` of
    ``exact_map`` of ``to_eigen``, written out)::

        M = exp(-gamma dt/2) [cos(Omega dt) I + sin(Omega dt)/Omega (A + gamma/2 I)]
        c = (I - M) (phi*, 0)

    with ``A = [[0, 1], [-omega^2, -gamma]]`` (``A + gamma/2 I`` squares to ``-Omega^2 I``) and
    the rest point ``rest = phi*``. ``M`` as ``(m00, m01, m10, m11)``; ``1 - exp(-gamma dt/2)
    cos(Omega dt)`` without cancellation, as in ``propagator``. Its gradients are written out
    (``_ModulatedMap``): 1.2x faster than autograd through the same formulas on a 16 x 256 x
    192 batch, and free of its cancellation in ``d sinc / d Omega`` for slow modes."""
    inputs = (rest, torch.as_tensor(dt, dtype=rest.dtype, device=rest.device), frequency, friction)
    if not torch.is_grad_enabled():  # generation: no graph, no broadcast copies
        *m, c0, c1 = _map(*inputs)[0]
    else:
        *m, c0, c1 = _ModulatedMap.apply(*torch.broadcast_tensors(*inputs))
    return tuple(m), (c0, c1)


def modulated_step(
    phi: Tensor, pi: Tensor, rest: Tensor, dt: Tensor, lam: Complex
) -> tuple[Tensor, Tensor]:
    """``modulated_map`` applied to one state, for generation (no gradient), with the step's
    eigenvalue ``lam = (-gamma/2, Omega)`` (``eigenvalue``): in the step's own eigen coordinate
    ``zeta = pi - conj(lam) u`` of the displacement ``u = phi - phi*``, ``d zeta/dt = lam zeta``
    (``lam + conj(lam) = -gamma``, ``lam conj(lam) = omega^2``), so the step is one complex
    product, and ``u = Im zeta / Omega``, ``pi = Re zeta - gamma/2 u``. A third of the kernels
    of forming ``M`` and applying it (at batch 1 the count of kernels sets the speed)."""
    decay, frequency = lam
    u = phi - rest
    zeta = torch.complex(torch.addcmul(pi, decay, u, value=-1), frequency * u)
    # exp(lam dt) as polar(|a|, Omega dt): a third of the time of a complex exp on CPU
    zeta = torch.view_as_real(zeta * torch.polar(torch.exp(decay * dt), frequency * dt))
    u = zeta[..., 1] / frequency
    return u + rest, torch.addcmul(zeta[..., 0], decay, u)


def _map(rest: Tensor, dt: Tensor, frequency: Tensor, friction: Tensor):
    """``modulated_map``'s ``(m00, m01, m10, m11, c0, c1)``, and what its gradient needs:
    ``exp(-gamma dt/2)``, ``cos(Omega dt)``, ``sin(Omega dt)/Omega``, ``1 - m00`` and ``m10``."""
    decay = torch.expm1(-0.5 * friction * dt)  # envelope - 1
    envelope = 1 + decay
    half = 0.5 * frequency * dt
    sin, cos = torch.sin(half), torch.cos(half)
    versine = 2 * sin**2  # 1 - cos(Omega dt)
    sinc = 2 * sin * cos / frequency  # sin(Omega dt) / Omega
    cos = 1 - versine
    damp = 0.5 * friction * sinc
    m10 = -envelope * stiffness(frequency, friction) * sinc
    kept = versine - decay * cos - envelope * damp  # 1 - m00, without cancellation
    outputs = (envelope * (cos + damp), envelope * sinc, m10, envelope * (cos - damp))
    return (*outputs, kept * rest, -m10 * rest), (envelope, cos, sinc, kept, m10)


class _ModulatedMap(torch.autograd.Function):
    """``modulated_map`` with its gradient in closed form. With ``L = sum g . (M, c)``, ``M = E
    (cos I + sinc (A + gamma/2 I))``, ``c = (I - M)(rest, 0)``: the ``c`` terms fold into
    ``g00``, ``g10``; then ``L = E F`` with ``F = (g00 + g11) cos + G sinc``, ``G = (g00 - g11)
    gamma/2 + g01 - g10 omega^2``, differentiated through ``E``, ``cos``, ``sinc``, ``G``."""

    @staticmethod
    def forward(ctx, rest: Tensor, dt: Tensor, frequency: Tensor, friction: Tensor):
        outputs, saved = _map(rest, dt, frequency, friction)
        ctx.save_for_backward(rest, dt, frequency, friction, *saved)
        return outputs

    @staticmethod
    def backward(ctx, g00, g01, g10, g11, gc0, gc1):
        rest, dt, frequency, friction, envelope, cos, sinc, kept, m10 = ctx.saved_tensors
        g00, g10 = g00 - rest * gc0, g10 - rest * gc1
        g_rest = gc0 * kept - gc1 * m10
        both, diff = g00 + g11, g00 - g11
        coupled = 0.5 * friction * diff + g01 - stiffness(frequency, friction) * g10  # G
        total = envelope * (both * cos + coupled * sinc)  # L
        theta = frequency * dt
        # d sinc / d Omega = dt^2 (theta cos theta - sin theta) / theta^2: a series where the
        # difference would cancel
        t2 = theta**2
        series = -theta * (1 / 3 - t2 * (1 / 30 - t2 / 840))
        exact = (theta * cos - frequency * sinc) / t2.clamp_min(1e-30)
        dsinc = dt**2 * torch.where(theta.abs() < 0.1, series, exact)
        g_dt = envelope * (coupled * cos - both * frequency**2 * sinc) - 0.5 * friction * total
        g_frequency = envelope * (
            coupled * dsinc - sinc * (both * dt * frequency + 2 * frequency * g10)
        )
        g_friction = envelope * sinc * 0.5 * (diff - friction * g10) - 0.5 * dt * total
        return g_rest, g_dt, g_frequency, g_friction


def drive_gain(dt: Tensor | float, frequency: Tensor, friction: Tensor) -> Tensor:
    """``sqrt(1 - |a|^2) / |1 - a|`` at step ``dt``: with rest points scaled by it, a mode driven
    by uncorrelated ones moves with their amplitude whatever its memory (LRU's normalisation).
    Without it long-lived resonant modes build amplitudes ~ ``(gamma dt)^-1/2``, their energies
    swamp the readout, and training is much slower (3.64 against 2.94 bits/byte after 1M bytes)."""
    _, complement = propagator(dt, frequency, friction)
    return torch.sqrt(-torch.expm1(-friction * dt) / (complement[0] ** 2 + complement[1] ** 2))


def dissipation(offset: Complex, dt: Tensor | float, frequency: Tensor, friction: Tensor) -> Tensor:
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
    heat = -2 * stiffness(frequency, friction) * modulus2 * decay + friction * oscillating
    return heat.clamp_min(0)


def mode_system(source: Tensor, frequency: Tensor, friction: Tensor) -> System:
    """``C`` modes as the core's system: one site, ``C`` fields, no conductance, ``mass2 =
    omega^2``. Leading axes of ``source`` ``(..., C)`` become the batch; fields go through
    ``_sites`` alike."""
    modes = source.shape[-1]
    return System(
        DenseGraph(1),
        kappa=source.new_zeros(1, 1),
        mass2=stiffness(frequency, friction).view(modes, 1),
        source=_sites(source),
        gamma=friction.view(modes, 1),
    )


def _sites(x: Tensor) -> Tensor:
    """``(..., C)`` -> ``(N, C, 1)``: one-site fields for the core."""
    return x.reshape(-1, x.shape[-1], 1)


def energy_density(system: System, phi: Tensor, pi: Tensor) -> tuple[Tensor, Tensor]:
    """``T00 = pi^2/2 + V`` and ``L = pi^2/2 - V`` of fields ``(..., C)`` of a ``mode_system``:
    its ``stress_energy``, whose gradient terms vanish on one site; skipping them makes the
    readout 2.5x cheaper. ``V`` is the core's potential."""
    kinetic = 0.5 * pi**2
    potential = system.potential(_sites(phi)).view_as(phi)
    return kinetic + potential, kinetic - potential


# --- the exact integrator of a core System ---------------------------------------------------


def damped_modes(system: System, state: State) -> tuple[Tensor, Tensor, Tensor]:
    """``(Omega, gamma, omega^2)`` per site and field, shaped like the fields, of a system made
    of independent underdamped linear modes; one ``ValueError`` naming everything else it holds
    otherwise."""
    problems = []
    if state.pi is None:
        problems.append("no momenta (dissipative branch)")
    if not system.is_linear:
        problems.append("a quartic term")
    if system.rotation is not None:
        problems.append("a channel rotation")
    if system.mobility is not None:
        problems.append("mobility")
    if bool(system.kappa.ne(0).any()):
        problems.append("conductance between sites")
    omega2 = torch.zeros_like(state.phi)
    if system.mass2 is not None:
        omega2 = omega2 + system.mass2
    if system.coupling is not None:
        diagonal = system.coupling.diagonal()
        if bool((system.coupling - torch.diag(diagonal)).ne(0).any()):
            problems.append("off-diagonal channel coupling")
        omega2 = omega2 + diagonal.view(1, -1, *[1] * (state.phi.dim() - 2))
    friction = torch.zeros_like(omega2)
    if system.gamma is not None:
        friction = friction + system.gamma
    if bool((omega2 <= 0.25 * friction**2).any()):
        problems.append("overdamped, critically damped or free modes (mass2 + W_aa <= gamma^2/4)")
    if problems:
        raise ValueError(
            "the exact integrator needs independent underdamped linear modes; this system has "
            + ", ".join(problems)
        )
    return damped_frequency(omega2, friction), friction, omega2


def _rest(source: Tensor | None, omega2: Tensor) -> Tensor:
    """Rest point ``phi* = rho/omega^2`` (zero without a source)."""
    return torch.zeros_like(omega2) if source is None else source / omega2


def exact_step(system: System, state: State, dt: Tensor | float) -> State:
    """One exact step of independent damped modes (the step-by-step form of ``exact_rollout``);
    the heat ``int gamma pi^2`` (``dissipation``) goes into ``T0 s``, so ``E`` is unchanged."""
    frequency, friction, stiffness = damped_modes(system, state)
    rest = _rest(system.source, stiffness)
    w = to_eigen(state.phi, state.pi, frequency, friction)
    star = fixed_point(rest, frequency, friction)
    heat = dissipation((w[0] - star[0], w[1] - star[1]), dt, frequency, friction).sum(1)
    a, b = exact_map(rest, dt, frequency, friction)
    phi, pi = from_eigen(cadd(cmul(a, w), b), frequency, friction)
    return State(phi, pi, state.s + heat / system.temperature)


def exact_rollout(
    system: System,
    state: State,
    dt: Tensor | float,
    steps: int,
    sources: Sequence[Tensor] | None = None,
    diagnostics: bool = False,
    chunk: int = 16,
) -> tuple[State, Diagnostics | None]:
    """``steps`` exact steps at once (``rollout(..., method="exact")``): ``exact_map`` per step,
    then ``linear_recurrence`` over all of them.

    Args:
        system: independent underdamped linear modes (see ``damped_modes``).
        state: initial state.
        dt: step size: a float, a tensor broadcasting against the fields ``(B, C, *sites)``, or
            one per step: a tensor with one more (leading) axis than the fields.
        steps: number of steps.
        sources: optional source per step (``len >= steps``), switched on before each step; the
            work ``-(rho_new - rho_old) . phi`` they do is recorded, as by ``rollout``.
        diagnostics: record ``H``, ``E``, ``S`` and the external work after every step.
        chunk: steps per chunk of the scan (speed only).

    Returns:
        The final state and, if asked, the ``Diagnostics``.
    """
    frequency, friction, stiffness = damped_modes(system, state)
    w0 = to_eigen(state.phi, state.pi, frequency, friction)
    # from here on everything is laid out (B, steps, C, *sites)
    shape = state.phi.shape
    if isinstance(dt, Tensor) and dt.dim() == len(shape) + 1:  # one per step
        if dt.shape[0] < steps:
            raise ValueError(f"{dt.shape[0]} step sizes given for {steps} steps")
        dt = dt[:steps].movedim(0, 1)
    elif isinstance(dt, Tensor):
        dt = dt.reshape((1,) * (len(shape) - dt.dim()) + dt.shape).unsqueeze(1)
    source = torch.zeros_like(state.phi) if system.source is None else system.source
    source = torch.broadcast_to(source, shape)  # rho before the first step
    rho = _per_step(sources, shape, steps, "sources", source)
    initial = source.unsqueeze(1)
    frequency, friction, stiffness = (x.unsqueeze(1) for x in (frequency, friction, stiffness))
    rest = rho / stiffness
    a, b = exact_map(rest, dt, frequency, friction)
    # one step more, in front, sets the initial state: w_0 = 0 w_{-1} + w(state)
    a = tuple(F.pad(x.expand_as(rest), [0, 0] * (len(shape) - 1) + [1, 0]) for x in a)
    b = tuple(torch.cat([start.unsqueeze(1), x], 1) for start, x in zip(w0, b, strict=True))
    w = linear_recurrence(a, b, chunk)  # (B, steps + 1, C, *sites)
    phi, pi = from_eigen(w, frequency, friction)
    star = fixed_point(rest, frequency, friction)
    offset = (w[0][:, :-1] - star[0], w[1][:, :-1] - star[1])
    heat = dissipation(offset, dt, frequency, friction).sum(2) / system.temperature
    s = state.s.unsqueeze(1) + heat.cumsum(1)
    final = State(phi[:, -1], pi[:, -1], s[:, -1])
    if not diagnostics:
        return final, None
    with torch.no_grad():
        rows = [(system.hamiltonian(state.phi, state.pi), system.entropy(state.s))]
        for k in range(steps):
            now = system.replace(source=rho[:, k])
            rows.append((now.hamiltonian(phi[:, k + 1], pi[:, k + 1]), now.entropy(s[:, k])))
        hamiltonian, entropy = (torch.stack(column) for column in zip(*rows, strict=True))
        switched = rho - torch.cat([initial, rho[:, :-1]], 1)
        work = -(switched * phi[:, :-1]).flatten(2).sum(2).cumsum(1)  # (B, steps)
        work = F.pad(work.T, [0, 0, 1, 0])
        energy = hamiltonian + system.temperature * entropy
    return final, Diagnostics(hamiltonian, energy, entropy, work)


def _per_step(
    x: Sequence[Tensor] | Tensor | None,
    shape: torch.Size,
    steps: int,
    what: str,
    default: Tensor | None = None,
) -> Tensor:
    """A per-step tensor ``(steps, ...)`` broadcasting against fields ``shape`` -> ``(B, steps,
    C, *sites)``; ``None``: ``default`` (shaped like the fields) at every step."""
    if x is None:
        return default.unsqueeze(1).expand(shape[0], steps, *shape[1:])
    if len(x) < steps:
        raise ValueError(f"{len(x)} {what} given for {steps} steps")
    return torch.stack([torch.broadcast_to(v, shape) for v in x[:steps]], 1)


def modulated_rollout(
    system: System,
    state: State,
    dt: Tensor,
    sources: Tensor,
    frequencies: Tensor | None = None,
    frictions: Tensor | None = None,
    diagnostics: bool = False,
    chunk: int = 16,
) -> tuple[State, tuple[Tensor, Tensor], Diagnostics | None]:
    """``exact_rollout`` of modes whose frequency ``Omega`` and friction ``gamma`` change with
    every step, as the source and the step size do (docs/physics.md, "Modulated modes").

    Step ``k`` holds the mode system ``(Omega_k, gamma_k, rho_k)`` over ``dt_k``: an exact
    affine map of ``(phi, pi)`` (``modulated_map``), all of them at once by
    ``matrix_recurrence``. Changing ``(omega^2, rho)`` between steps does the work ``H_new -
    H_old`` on the state; friction turns energy into heat (``dissipation``) within a step. So
    ``H + T0 S - W`` is conserved to rounding; ``Diagnostics`` records it after every step.

    Args:
        system: the modes before the first step (``mode_system``: its ``(Omega, gamma)`` and
            source set the energy of the initial state).
        state: initial state.
        dt: step size per step ``(steps, ...)``, broadcasting against the fields.
        sources: source ``rho`` per step ``(steps, ...)``; ``steps = len(sources)``.
        frequencies: ``Omega`` per step (default: the system's), ``> 0``.
        frictions: ``gamma`` per step (default: the system's), ``>= 0``.
        diagnostics: record ``H``, ``E``, ``S`` and the work after every step.
        chunk: steps per chunk of the scan (speed only).

    Returns:
        The final state, ``(phi, pi)`` after every step ``(B, steps, C, *sites)``, and, if asked,
        the ``Diagnostics``.
    """
    frequency0, friction0, stiffness0 = damped_modes(system, state)
    shape, steps = state.phi.shape, len(sources)
    rho = _per_step(sources, shape, steps, "sources")
    dt = _per_step(dt, shape, steps, "step sizes")
    frequency = _per_step(frequencies, shape, steps, "frequencies", frequency0)
    friction = _per_step(frictions, shape, steps, "frictions", friction0)
    if bool((frequency <= 0).any()) or bool((friction < 0).any()):
        raise ValueError("modulated modes need frequencies > 0 and frictions >= 0")
    omega2 = stiffness(frequency, friction)
    rest = rho / omega2
    m, offset = modulated_map(rest, dt, frequency, friction)
    # one step more, in front, sets the initial state: x_0 = 0 x_{-1} + x(state)
    m = tuple(F.pad(x, [0, 0] * (len(shape) - 1) + [1, 0]) for x in m)
    c = tuple(
        torch.cat([x0.unsqueeze(1), x], 1)
        for x0, x in zip((state.phi, state.pi), offset, strict=True)
    )
    phi, pi = matrix_recurrence(m, c, chunk)  # (B, steps + 1, C, *sites)
    start = to_eigen(phi[:, :-1] - rest, pi[:, :-1], frequency, friction)  # w - w* of each step
    heat = dissipation(start, dt, frequency, friction).sum(2) / system.temperature
    s = state.s.unsqueeze(1) + heat.cumsum(1)
    final = State(phi[:, -1], pi[:, -1], s[:, -1])
    trajectory = (phi[:, 1:], pi[:, 1:])
    if not diagnostics:
        return final, trajectory, None
    with torch.no_grad():
        before = system
        rows = [(system.hamiltonian(state.phi, state.pi), system.entropy(state.s))]
        work = [torch.zeros_like(rows[0][0])]
        for k in range(steps):
            now = system.replace(
                source=rho[:, k], mass2=omega2[:, k], gamma=friction[:, k], coupling=None
            )
            x = (phi[:, k], pi[:, k])  # the state the switch acts on
            work.append(work[-1] + now.hamiltonian(*x) - before.hamiltonian(*x))
            rows.append((now.hamiltonian(phi[:, k + 1], pi[:, k + 1]), now.entropy(s[:, k])))
            before = now
        hamiltonian, entropy = (torch.stack(column) for column in zip(*rows, strict=True))
        energy = hamiltonian + system.temperature * entropy
    return final, trajectory, Diagnostics(hamiltonian, energy, entropy, torch.stack(work))
