"""Readout: the stress-energy tensor ``T^{mu nu}`` of the fields (docs/physics.md, "Readout").

Site-centred, per field, signature ``(+, -, ...)``. ``<.>`` averages edge quantities onto sites
(each edge gives half to each endpoint, so ``sum_x T^00_x = H`` exactly)::

    T^00 = pi^2/2 + <kappa (d phi)^2>/2 + V                    energy density
    T^0i = -pi <d_i phi>                                       momentum density
    T^ii = <kappa (d_i phi)^2> - L,   L = pi^2/2 - <kappa (d phi)^2>/2 - V
    T^ij = <sqrt(kappa) d_i phi><sqrt(kappa) d_j phi>                (i != j)

Off-diagonal stresses pair the site averages of two directions (edges of different directions do
not meet). Weighting both factors by ``sqrt(kappa)`` keeps ``T`` quadratic, symmetric and local,
and blind to potential differences across insulating edges: those carry no current, and they grow
with the size of the lattice.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .system import System


def stress_energy_components(dim: int) -> list[str]:
    """Names of the components ``stress_energy`` returns for a lattice of dimension ``dim``."""
    if dim == 0:
        return ["T00", "L"]
    names = ["T00"] + [f"T0{i + 1}" for i in range(dim)]
    names += [f"T{i + 1}{j + 1}" for i in range(dim) for j in range(i, dim)]
    return names


def stress_energy(system: System, phi: Tensor, pi: Tensor | None = None) -> Tensor:
    """``T^{mu nu}`` per site and field: ``(B, C, K, *sites)``, components in the order of
    ``stress_energy_components`` (grid: 6, chain: 3, dense graph: ``T^00`` and ``L``)."""
    lattice = system.lattice
    kinetic = torch.zeros_like(phi) if pi is None else 0.5 * pi**2
    grad = lattice.grad(phi) if lattice.dim else None  # a dense graph's is (B, C, N, N): unused
    gradient = system.site_gradient_energy(phi)  # <kappa (d phi)^2> / 2
    potential = system.potential(phi)
    t00 = kinetic + gradient + potential
    lagrangian = kinetic - gradient - potential
    if lattice.dim == 0:
        return torch.stack([t00, lagrangian], dim=2)
    d_phi = lattice.directional_average(grad)  # <d_i phi>, (B, C, dim, *sites)
    # <sqrt(kappa) d_i phi>; the clamp keeps the gradient of sqrt finite on insulating edges
    root_phi = lattice.directional_average(system.kappa.clamp_min(1e-30).sqrt() * grad)
    kd2_phi = lattice.directional_average(system.kappa * grad**2)  # <kappa (d_i phi)^2>
    momentum = [
        -(torch.zeros_like(phi) if pi is None else pi) * d_phi[:, :, i] for i in range(lattice.dim)
    ]
    stress = []
    for i in range(lattice.dim):
        for j in range(i, lattice.dim):
            if i == j:
                stress.append(kd2_phi[:, :, i] - lagrangian)
            else:
                stress.append(root_phi[:, :, i] * root_phi[:, :, j])
    return torch.stack([t00, *momentum, *stress], dim=2)


def noether_charges(t: Tensor) -> Tensor:
    """Spatial sums of ``T`` per field and component (total energy, momentum, stress):
    ``(B, C, K)``. Global tasks read these; ``T^00`` sums to ``H``."""
    return t.flatten(3).sum(-1)


class _Asinh(torch.autograd.Function):
    """``asinh`` as ``sign(x) log1p(a + a^2 / (1 + sqrt(1 + a^2)))``, ``a = |x|``: exact to
    rounding (no cancellation near 0, no overflow below ``|x| ~ 1e38``), computed in place,
    with the derivative ``1 / sqrt(1 + x^2)`` written out. Forward and backward together run
    1.5-2x faster than ``torch.asinh``, whose CPU kernel is not vectorised."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        a = x.abs()
        root = torch.hypot(a, a.new_ones(())).add_(1)  # sqrt(1 + a^2) + 1 without overflow
        return torch.div(a, root).mul_(a).add_(a).log1p_().copysign_(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.addcmul(torch.ones_like(x), x, x).rsqrt_().mul_(grad)


def fast_asinh(x: Tensor) -> Tensor:
    """``torch.asinh``, faster on CPUs (see ``_Asinh``). Compiled code fuses ``torch.asinh``
    itself, and torch 2.11's compiler gives ``_Asinh`` (in-place ops in its forward) a zero
    gradient."""
    if torch.compiler.is_compiling():
        return torch.asinh(x)
    return _Asinh.apply(x)
