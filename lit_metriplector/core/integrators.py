"""Time integrators for the metriplectic dynamics (docs/physics.md, "Integrators").

- ``euler``: ``z <- z + dt dz/dt``, the paper's choice; the energy drifts.
- ``strang``: a symmetric splitting whose sub-steps are exact or structure preserving::

      friction(dt/2) rotation(dt/2) leapfrog(dt/2) mobility(dt) leapfrog(dt/2) rotation(dt/2)
      friction(dt/2)

  Friction and mobility move exactly the energy they remove into ``T0 S``; the Cayley rotation
  preserves ``|pi|``; so the energy error comes from leapfrog alone: bounded, ``O(dt^2)``.

- ``exact``: independent linear damped modes (no conductance, diagonal coupling, no rotation,
  quartic or mobility) have an exact step; ``core/modes.py`` runs all steps at once.

Sources that change between steps do work on the system; ``rollout`` records it so that the
ledger ``E - W_ext`` is the conserved quantity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .modes import exact_rollout
from .preconditioners import Preconditioner
from .solver import CGOptions, solve, solve_dtype
from .system import Diagnostics, State, System, channel_mix, ledger_dtype

Method = Literal["euler", "strang", "exact"]


def euler_step(system: System, state: State, dt: Tensor | float) -> State:
    """Explicit Euler on the full vector field."""
    dz = system.vector_field(state)
    pi = None if state.pi is None else state.pi + dt * dz.pi
    return State(state.phi + dt * dz.phi, pi, state.s + dt * dz.s)


def friction_step(system: System, state: State, dt: Tensor | float) -> State:
    """Exact flow of ``dpi/dt = -gamma pi``; the kinetic energy removed becomes ``T0 s``."""
    if system.gamma is None or state.pi is None:
        return state
    pi = torch.exp(-system.gamma * dt) * state.pi
    heat = 0.5 * (state.pi**2 - pi**2).sum(1) / system.temperature
    return State(state.phi, pi, state.s + heat)


def cayley(x: Tensor) -> Tensor:
    """``(I - x/2)^-1 (I + x/2)``: orthogonal when ``x`` is skew."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(eye - 0.5 * x, eye + 0.5 * x)


def rotation_step(system: System, state: State, dt: Tensor | float) -> State:
    """Gyroscopic flow ``dpi/dt = G pi`` by the Cayley transform: ``|pi|`` is preserved."""
    if system.rotation is None or state.pi is None:
        return state
    return State(state.phi, channel_mix(cayley(dt * system.rotation), state.pi), state.s)


def leapfrog_step(system: System, state: State, dt: Tensor | float) -> State:
    """Stormer-Verlet (kick-drift-kick) for ``dphi/dt = pi, dpi/dt = -h``: symplectic."""
    if state.pi is None:
        return state
    pi = state.pi - 0.5 * dt * system.force(state.phi)
    phi = state.phi + dt * pi
    pi = pi - 0.5 * dt * system.force(phi)
    return State(phi, pi, state.s)


def implicit_system(system: System, phi: Tensor, dt: Tensor | float) -> System:
    """The screened Poisson problem of the implicit mobility step from ``phi``: extra mass
    ``1/(dt Gamma)``, source ``rho + phi/(dt Gamma)``, the quartic term lagged at ``phi``."""
    inv = 1.0 / (dt * system.mobility).clamp_min(1e-12)
    mass2 = inv if system.mass2 is None else system.mass2 + inv
    if not system.is_linear:
        mass2 = mass2 + system.quartic * (phi**2).sum(1, keepdim=True)
    source = inv * phi if system.source is None else system.source + inv * phi
    return System(system.lattice, system.kappa, mass2, source, coupling=system.coupling)


def mobility_preconditioner(
    system: System, state: State, dt: Tensor | float, options: CGOptions | None = None
) -> Preconditioner | None:
    """The preconditioner of the implicit mobility step. Its operator ``I/(dt Gamma) + A`` does
    not depend on the state or the sources when the system is linear, so one serves every step
    of a rollout (and every adjoint solve); ``None`` when there is nothing to share."""
    if system.mobility is None or not system.is_linear:
        return None
    options = options or CGOptions()
    implicit = implicit_system(system, state.phi, dt)
    implicit = implicit.to(solve_dtype(implicit, options))
    return options.precondition(implicit, implicit.source)


def mobility_step(
    system: System,
    state: State,
    dt: Tensor | float,
    options: CGOptions | None = None,
    preconditioner: Preconditioner | None = None,
) -> State:
    """Implicit step of the gradient flow ``dphi/dt = -Gamma h``:
    ``(I + dt Gamma A) phi' = phi + dt Gamma rho``, solved as the screened Poisson problem with
    extra mass ``1/(dt Gamma)``; the quartic term, if any, is lagged at ``phi``.

    For ``quartic = 0`` the decrease of ``H`` is, with ``d = phi' - phi``, exactly
    ``sum d^2 / (dt Gamma) + d.A d / 2 >= 0`` (a proximal step of a convex quadratic); computing
    it in this form keeps it nonnegative under rounding. It becomes entropy, shared among sites in
    proportion to their dissipation ``d^2 / (dt Gamma)``, so ``E`` is unchanged up to the CG
    tolerance. With a lagged quartic term the plain difference of ``H`` is used (and ``S`` may
    then decrease: the monitors report it). ``preconditioner``: one from
    ``mobility_preconditioner``, shared between steps.
    """
    if system.mobility is None:
        return state
    inv = 1.0 / (dt * system.mobility).clamp_min(1e-12)
    implicit = implicit_system(system, state.phi, dt)
    phi, _ = solve(implicit, options, x0=state.phi, preconditioner=preconditioner)
    phi = phi.to(state.phi.dtype)
    step = phi - state.phi
    if system.is_linear:
        heat = mobility_heat(inv, step, system.operator(step))
    else:
        released = system.hamiltonian(state.phi) - system.hamiltonian(phi)
        heat = mobility_heat(inv, step, released=released)
    return State(phi, state.pi, state.s + heat / system.temperature)


def mobility_heat(
    inv: Tensor, step: Tensor, operator_step: Tensor | None = None, released: Tensor | None = None
) -> Tensor:
    """Heat ``T0 dS`` per site of an implicit mobility step ``d = phi' - phi`` with
    ``inv = 1 / (dt Gamma)``: the energy it releases, shared among sites in proportion to their
    dissipation ``d^2 / (dt Gamma)``. ``released`` per sample, or for quadratic ``H`` computed
    from ``operator_step = A d`` as ``sum d^2 / (dt Gamma) + d.A d / 2`` (nonnegative under
    rounding, see ``mobility_step``)."""
    local = (inv * step**2).sum(1)
    total = local.flatten(1).sum(1)
    if released is None:
        released = total + 0.5 * (step * operator_step).flatten(1).sum(1)
    per_sample = (-1, *[1] * (local.dim() - 1))
    share = local / total.clamp_min(torch.finfo(local.dtype).tiny).view(per_sample)
    return share * released.view(per_sample)


def strang_step(
    system: System,
    state: State,
    dt: Tensor | float,
    options: CGOptions | None = None,
    preconditioner: Preconditioner | None = None,
) -> State:
    """One symmetric splitting step (see the module docstring)."""
    half = 0.5 * dt
    state = rotation_step(system, friction_step(system, state, half), half)
    if system.mobility is None:  # the two leapfrog halves merge into one step
        state = leapfrog_step(system, state, dt)
    else:
        state = leapfrog_step(system, state, half)
        state = mobility_step(system, state, dt, options, preconditioner)
        state = leapfrog_step(system, state, half)
    return friction_step(system, rotation_step(system, state, half), half)


def rollout(
    system: System,
    state: State,
    dt: Tensor | float,
    steps: int,
    method: Method = "strang",
    sources: Sequence[Tensor] | None = None,
    diagnostics: bool = False,
    options: CGOptions | None = None,
) -> tuple[State, Diagnostics | None]:
    """Integrate ``steps`` steps of size ``dt``.

    Args:
        system: the configured system.
        state: initial state.
        dt: step size (float or learned scalar tensor); for ``"exact"`` also per site and
            field, or per step (see ``modes.exact_rollout``).
        steps: number of steps.
        method: ``"euler"``, ``"strang"`` or ``"exact"`` (``modes.exact_rollout``).
        sources: optional source per step (``len >= steps``), switched on before each step; the
            work ``-(rho_new - rho_old) . phi`` they do is recorded.
        diagnostics: record ``H``, ``E``, ``S`` and the external work after every step.
        options: CG settings for implicit mobility steps.

    Low-precision inputs (bf16 autocast) are integrated in float32 with autocast off, so energy
    ledgers stay meaningful.

    Returns:
        The final state and, if asked, the ``Diagnostics``.
    """
    dtype = ledger_dtype(state.phi.dtype)
    with torch.autocast(state.phi.device.type, enabled=False):
        return _rollout(
            system.to(dtype), state.to(dtype), dt, steps, method, sources, diagnostics, options
        )


def _rollout(system, state, dt, steps, method, sources, diagnostics, options):
    if method not in ("euler", "strang", "exact"):
        raise ValueError(f"unknown integrator {method!r}; expected 'euler', 'strang' or 'exact'")
    if sources is not None and len(sources) < steps:
        raise ValueError(f"{len(sources)} sources given for {steps} steps")
    if method == "exact":
        return exact_rollout(system, state, dt, steps, sources, diagnostics)
    records: list[tuple[Tensor, ...]] = []
    work = torch.zeros(state.phi.shape[0], dtype=state.phi.dtype, device=state.phi.device)

    def record() -> None:
        with torch.no_grad():
            hamiltonian = system.hamiltonian(state.phi, state.pi)
            s = system.entropy(state.s)
            records.append((hamiltonian, hamiltonian + system.temperature * s, s, work.clone()))

    if diagnostics:
        record()
    shared = mobility_preconditioner(system, state, dt, options) if method == "strang" else None
    for k in range(steps):
        if sources is not None:
            old = 0.0 if system.source is None else system.source
            work = work - ((sources[k] - old) * state.phi).detach().flatten(1).sum(1)
            system = system.replace(source=sources[k])
        if method == "euler":
            state = euler_step(system, state, dt)
        else:
            state = strang_step(system, state, dt, options, shared)
        if diagnostics:
            record()
    if not diagnostics:
        return state, None
    return state, Diagnostics(*(torch.stack(column) for column in zip(*records, strict=True)))
