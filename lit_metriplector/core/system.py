"""The configured physical system and its metriplectic dynamics (docs/physics.md, "The
configured system").

State ``z = (phi, pi, s)``: ``C`` fields ``phi`` and momenta ``pi`` of shape ``(B, C, *sites)``
(``pi is None`` on the dissipative branch) and an entropy density ``s`` of shape ``(B, *sites)``.

Hamiltonian::

    H = sum_x [ |pi|^2/2 + sum_a mass2 phi_a^2/2 + phi^T W phi/2 + quartic/4 |phi|^4 - source.phi ]
        + sum_e sum_a kappa_e (grad_e phi_a)^2 / 2

Total energy ``E = H + T0 S`` and entropy ``S = sum_x s``. The dynamics ``dz/dt = L dE + M dS``
uses a Poisson operator ``L`` that ignores ``s`` (so ``L dS = 0``) and a metric ``M`` built from
PSD blocks that annihilate ``dE = (h, pi, T0)`` (so ``M dE = 0``): energy is conserved and
entropy never decreases, by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import Tensor

from .lattice import Lattice


class State(NamedTuple):
    """``phi``: fields, ``pi``: momenta (``None`` on the dissipative branch), ``s``: entropy."""

    phi: Tensor
    pi: Tensor | None
    s: Tensor

    def to(self, dtype: torch.dtype) -> State:
        return State(*(None if t is None else t.to(dtype) for t in self))


# Beside ``State`` (not in integrators.py): ``modes.exact_rollout`` records it too.
@dataclass
class Diagnostics:
    """Per-step ledgers of a rollout, each ``(steps + 1, B)``; row 0 is the initial state.

    ``work`` is the cumulative external work done by changing sources, so ``energy - work`` is
    conserved by the exact dynamics.
    """

    hamiltonian: Tensor
    energy: Tensor
    entropy: Tensor
    work: Tensor

    @property
    def conserved(self) -> Tensor:
        """``E - W_ext``: constant under the exact dynamics."""
        return self.energy - self.work

    def relative_drift(self) -> Tensor:
        """Largest ``|ledger_t - ledger_0|`` over the rollout, relative to the energy scale."""
        ledger = self.conserved
        scale = self.hamiltonian.abs().amax(0).clamp_min(1e-12)
        return ((ledger - ledger[:1]).abs().amax(0) / scale).detach()

    def entropy_production(self) -> Tensor:
        """Per-step entropy change ``(steps, B)``: never negative for the exact dynamics."""
        return self.entropy.diff(dim=0)


def ledger_dtype(dtype: torch.dtype) -> torch.dtype:
    """Precision for solves and energy ledgers: at least float32, whatever autocast chose."""
    return torch.promote_types(dtype, torch.float32)


def channel_mix(matrix: Tensor, x: Tensor) -> Tensor:
    """Apply a ``C x C`` matrix to the channel axis of ``(B, C, *sites)``."""
    return torch.einsum("ab,nb...->na...", matrix, x)


def _sum_sites(x: Tensor) -> Tensor:
    """Sum over every axis but the batch axis."""
    return x.flatten(1).sum(1)


@dataclass(frozen=True)
class System:
    """A physical system configured (per sample) by the input.

    Per-sample tensors broadcast against fields ``(B, C, *sites)``; ``kappa`` against edges
    ``(B, C, *edges)``. ``None`` means the term is absent.

    Args:
        lattice: where the fields live.
        kappa: conductance on edges, ``>= 0`` (walls: 0). Masked to the lattice's edges.
        mass2: screening mass squared per site and field, ``>= 0``.
        source: sources ``rho`` per site and field.
        gamma: friction on the momenta per site and field, ``>= 0``.
        mobility: mobility ``Gamma`` of the fields (dissipative relaxation), ``>= 0``.
        coupling: channel coupling ``W = A^T A`` (``C x C``, symmetric PSD), global.
        quartic: self-interaction ``lambda >= 0`` (scalar tensor or float).
        rotation: skew channel rotation ``G = B - B^T`` (``C x C``) acting on the momenta.
        temperature: ``T0`` converting entropy to energy.
    """

    lattice: Lattice
    kappa: Tensor
    mass2: Tensor | None = None
    source: Tensor | None = None
    gamma: Tensor | None = None
    mobility: Tensor | None = None
    coupling: Tensor | None = None
    quartic: Tensor | float = 0.0
    rotation: Tensor | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        # Slots that are not edges of the lattice must carry no conductance.
        object.__setattr__(self, "kappa", self.kappa * self.lattice.edge_mask(self.kappa))

    def replace(self, **changes) -> System:
        return replace(self, **changes)

    def to(self, dtype: torch.dtype) -> System:
        """The same system with every tensor cast to ``dtype``."""
        cast = {
            name: value.to(dtype)
            for name, value in vars(self).items()
            if isinstance(value, Tensor) and value.is_floating_point()
        }
        return self.replace(**cast)

    @property
    def is_unscreened(self) -> bool:
        """No mass and no coupling: ``A`` is a pure graph Laplacian, singular on constants."""
        return self.mass2 is None and self.coupling is None

    @property
    def is_linear(self) -> bool:
        """No quartic term: ``h`` is affine in ``phi`` and equilibrium is one linear solve."""
        return isinstance(self.quartic, float) and self.quartic == 0.0

    # --- energy ------------------------------------------------------------------------------

    def operator(self, phi: Tensor) -> Tensor:
        """``A phi = -div(kappa grad phi) + mass2 phi + W phi`` (symmetric PSD)."""
        out = -self.lattice.div(self.kappa * self.lattice.grad(phi))
        if self.mass2 is not None:
            out = out + self.mass2 * phi
        if self.coupling is not None:
            out = out + channel_mix(self.coupling, phi)
        return out

    def operator_diagonal(self, like: Tensor) -> Tensor:
        """``diag A``: each edge adds its conductance to both endpoints."""
        diag = 2 * self.lattice.edge_to_site(self.kappa).expand_as(like)
        if self.mass2 is not None:
            diag = diag + self.mass2
        if self.coupling is not None:
            diag = diag + self.coupling.diagonal().view(1, -1, *[1] * (like.dim() - 2))
        return diag

    def potential(self, phi: Tensor) -> Tensor:
        """Site potential per field ``V_a`` (summed over ``a`` it is the site part of ``H``)."""
        v = torch.zeros_like(phi)
        if self.mass2 is not None:
            v = v + 0.5 * self.mass2 * phi**2
        if self.coupling is not None:
            v = v + 0.5 * phi * channel_mix(self.coupling, phi)
        if not self.is_linear:
            v = v + 0.25 * self.quartic * (phi**2).sum(1, keepdim=True) * phi**2
        if self.source is not None:
            v = v - self.source * phi
        return v

    def gradient_energy(self, phi: Tensor) -> Tensor:
        """Edge energy ``kappa (grad phi)^2 / 2`` per edge and field."""
        return 0.5 * self.kappa * self.lattice.grad(phi) ** 2

    def site_gradient_energy(self, phi: Tensor) -> Tensor:
        """``<kappa (d phi)^2> / 2``: the edge energy shared out to the sites ``(B, C, *sites)``
        (``lattice.edge_to_site``), as ``stress_energy`` reads it."""
        return self.lattice.edge_to_site(self.gradient_energy(phi))

    def hamiltonian(self, phi: Tensor, pi: Tensor | None = None) -> Tensor:
        """``H(phi, pi)`` per sample, shape ``(B,)``."""
        h = _sum_sites(self.potential(phi)) + _sum_sites(self.gradient_energy(phi))
        if pi is not None:
            h = h + 0.5 * _sum_sites(pi**2)
        return h

    def force(self, phi: Tensor) -> Tensor:
        """``h = dH/dphi = A phi - source + quartic |phi|^2 phi``."""
        h = self.operator(phi)
        if self.source is not None:
            h = h - self.source
        if not self.is_linear:
            h = h + self.quartic * (phi**2).sum(1, keepdim=True) * phi
        return h

    def entropy(self, s: Tensor) -> Tensor:
        """``S = sum_x s_x`` per sample."""
        return _sum_sites(s)

    def energy(self, state: State) -> Tensor:
        """``E = H + T0 S`` per sample."""
        return self.hamiltonian(state.phi, state.pi) + self.temperature * self.entropy(state.s)

    def energy_gradient(self, state: State) -> State:
        """``dE/dz = (h, pi, T0)`` in closed form."""
        return State(self.force(state.phi), state.pi, torch.full_like(state.s, self.temperature))

    # --- brackets ----------------------------------------------------------------------------

    def poisson(self, a: State) -> State:
        """``L a``: canonical on ``(phi, pi)`` plus ``G`` in the ``pi-pi`` block; zero on ``s``."""
        if a.pi is None:  # dissipative branch: no momenta, no reversible part
            return State(torch.zeros_like(a.phi), None, torch.zeros_like(a.s))
        dpi = -a.phi
        if self.rotation is not None:
            dpi = dpi + channel_mix(self.rotation, a.pi)
        return State(a.pi, dpi, torch.zeros_like(a.s))

    def metric(self, state: State, a: State) -> State:
        """``M(z) a``: per site and field, friction on ``(pi, s)`` and mobility on ``(phi, s)``.

        Each block is ``(c / T0^2) v v^T`` with ``v = (T0, -q)`` and ``q = pi`` (friction, ``c =
        gamma``) or ``q = h`` (mobility, ``c = Gamma``): PSD, and zero on ``dE`` because
        ``v . (q, T0) = T0 q - q T0 = 0``.
        """
        t0 = self.temperature
        dphi = torch.zeros_like(a.phi)
        dpi = None if a.pi is None else torch.zeros_like(a.pi)
        ds = torch.zeros_like(a.s)
        a_s = a.s.unsqueeze(1)
        if self.gamma is not None and state.pi is not None:
            w = self.gamma * (t0 * a.pi - state.pi * a_s) / t0  # (c / T0^2) T0 (v . a)
            dpi = dpi + w
            ds = ds - (w * state.pi).sum(1) / t0
        if self.mobility is not None:
            h = self.force(state.phi)
            w = self.mobility * (t0 * a.phi - h * a_s) / t0
            dphi = dphi + w
            ds = ds - (w * h).sum(1) / t0
        return State(dphi, dpi, ds)

    def vector_field(self, state: State) -> State:
        """``dz/dt = L dE + M dS`` with ``dS = (0, 0, 1)``."""
        grad_e = self.energy_gradient(state)
        grad_s = State(
            torch.zeros_like(state.phi),
            None if state.pi is None else torch.zeros_like(state.pi),
            torch.ones_like(state.s),
        )
        rev, irr = self.poisson(grad_e), self.metric(state, grad_s)
        dpi = None if state.pi is None else rev.pi + irr.pi
        return State(rev.phi + irr.phi, dpi, rev.s + irr.s)
