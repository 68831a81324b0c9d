"""``MetriplectorLayer``: features configure a system, its dynamics compute, ``T`` reads out.

    h --heads--> (kappa, mass2, rho, gamma, Gamma, phi0) --evolve--> (phi, pi)
      --stress_energy--> T --projection--> h + dh

``evolve`` is either the exact equilibrium of the dissipative branch (``solver="cg"``) or a
rollout of ``steps`` integrator steps (``"euler"`` / ``"strang"``) on the chosen branch. Heads
act per site (and per edge through the two endpoint features), so the layer runs on any lattice
of any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .integrators import Diagnostics, rollout
from .lattice import Lattice
from .readout import stress_energy, stress_energy_components
from .solver import CGOptions, SolveInfo, solve
from .system import State, System

Solver = Literal["cg", "euler", "strang"]
Branch = Literal["dissipative", "hamiltonian", "full"]


def pointwise(linear: nn.Linear, h: Tensor) -> Tensor:
    """Apply a linear map to the channel axis of ``(B, D, *sites)``."""
    return linear(h.movedim(1, -1)).movedim(-1, 1)


@dataclass
class RolloutReport:
    """What the evolution did, for monitors and images. ``entropy_produced`` is the total
    ``Delta S`` per sample; ``ledger`` holds per-step ledgers (integrators); ``solve`` the CG
    outcome; ``system`` and ``state`` the configured system and the final state."""

    entropy_produced: Tensor
    system: System
    state: State
    ledger: Diagnostics | None = None
    solve: SolveInfo | None = None


class MetriplectorLayer(nn.Module):
    """One Metriplector block on any lattice.

    Args:
        features: width ``D`` of the site features.
        dim: spatial dimension of the lattices it runs on (2: grid, 1: chain, 0: dense graph);
            fixes the number of stress-energy components read out.
        fields: number of fields ``C``.
        solver: ``"cg"`` (exact equilibrium, dissipative branch, linear) or an integrator.
        branch: physics branch for integrators: ``"dissipative"`` (gradient flow),
            ``"hamiltonian"`` (conservative waves) or ``"full"`` (both).
        steps: integrator steps per forward pass.
        edge_rank: rank of the pair factor of the conductance (0: site conductivities only).
        conductivity_floor: lower bound of the site conductivity (outside insulators). With no
            screening, only ``I^2 / kappa`` matters and training can drive the conductances
            towards zero until the lattice falls apart numerically; a floor stops that.
        coupling: learn the channel coupling ``W = A^T A``.
        quartic: learn a quartic self-interaction (integrators only).
        rotation: learn the skew channel rotation ``G`` (hamiltonian / full branches).
        tol: relative residual of CG solves.
        max_iter: CG iteration cap (``None``: scales with the lattice).
        preconditioner: CG preconditioner.
        readout: transform of ``T`` before the projection; ``"asinh"`` tames its scale.
        mass2: a fixed screening mass for every site and field; ``None`` learns it per site
            and field with a head. ``0`` solves the unscreened Poisson equation in the grounded
            (mean-zero) gauge.
        mass2_init: initial bias of the screening head; ``softplus(-6) = 2.5e-3`` gives a
            screening length of about 20 sites.
        external_source: the sources are given to ``forward`` (e.g. configured straight from
            the input) instead of read from the features.
    """

    def __init__(
        self,
        features: int,
        dim: int = 2,
        fields: int = 4,
        solver: Solver = "cg",
        branch: Branch = "dissipative",
        steps: int = 8,
        edge_rank: int = 4,
        conductivity_floor: float = 0.0,
        coupling: bool = True,
        quartic: bool = False,
        rotation: bool = False,
        tol: float = 1e-5,
        max_iter: int | None = None,
        preconditioner: Literal["none", "jacobi", "elimination"] = "jacobi",
        readout: Literal["linear", "asinh"] = "asinh",
        mass2: float | None = None,
        mass2_init: float = -6.0,
        external_source: bool = False,
    ) -> None:
        super().__init__()
        if solver == "cg" and (branch != "dissipative" or quartic):
            raise ValueError(
                "solver='cg' computes the linear dissipative equilibrium: use "
                "branch='dissipative' and quartic=False, or an integrator"
            )
        self.fields, self.solver, self.branch, self.steps = fields, solver, branch, steps
        self.edge_rank, self.readout = edge_rank, readout
        self.conductivity_floor = conductivity_floor
        self.cg = CGOptions(tol=tol, max_iter=max_iter, preconditioner=preconditioner)
        momenta = solver != "cg" and branch != "dissipative"
        friction = momenta and branch == "full"
        mobility = solver != "cg" and branch != "hamiltonian"
        heads = {"kappa": fields * (1 + edge_rank)}
        if mass2 is None:
            heads["mass2"] = fields
        if not external_source:
            heads["source"] = fields
        if solver != "cg":
            heads["phi0"] = fields
        if friction:
            heads["gamma"] = fields
        if mobility:
            heads["mobility"] = fields
        self.head_sizes = heads
        self.heads = nn.Linear(features, sum(heads.values()))
        self.fixed_mass2 = mass2
        if mass2 is None:
            with torch.no_grad():  # start weakly screened: information must travel far
                self.head_parameters("mass2")[1].fill_(mass2_init)
        self.coupling = nn.Parameter(0.1 * torch.randn(fields, fields)) if coupling else None
        self.quartic = nn.Parameter(torch.tensor(-2.0)) if quartic else None
        self.rotation = nn.Parameter(0.1 * torch.randn(fields, fields)) if rotation else None
        if rotation and not momenta:
            raise ValueError("rotation acts on momenta: use branch='hamiltonian' or 'full'")
        # the step size of the integrators (the CG branch has no time step: no unused parameter)
        self.log_dt = nn.Parameter(torch.tensor(math.log(0.5))) if solver != "cg" else None
        self.momenta, self.dim = momenta, dim
        self.components = stress_energy_components(dim)
        self.proj = nn.Linear(fields * len(self.components), features)

    def head_parameters(self, name: str) -> tuple[Tensor, Tensor]:
        """Views of the weight rows and biases of one head (e.g. ``"kappa"``), for custom
        initialisation: the first ``fields`` rows of ``"kappa"`` give the site conductivities."""
        start = 0
        for key, size in self.head_sizes.items():
            if key == name:
                rows = slice(start, start + size)
                return self.heads.weight[rows], self.heads.bias[rows]
            start += size
        raise KeyError(f"no head {name!r}; heads: {list(self.head_sizes)}")

    def _mass2(self, raw: dict[str, Tensor]) -> Tensor | None:
        if self.fixed_mass2 is None:
            return F.softplus(raw["mass2"])
        return raw["kappa"].new_tensor(self.fixed_mass2) if self.fixed_mass2 > 0 else None

    @property
    def dt(self) -> Tensor:
        return self.log_dt.exp()

    def conductance(
        self, raw: Tensor, lattice: Lattice, insulators: Tensor | None = None
    ) -> Tensor:
        """``kappa_e = k_tail k_head [2 sigmoid(q_tail . q_head / sqrt(r))]``: each site has a
        conductivity ``k = floor + softplus(u)``, zero on ``insulators``, and an edge conducts
        only if both ends do. An insulating site is then isolated from all its neighbours rather
        than forming a weakly attached network of its own (near-zero modes that stall CG), and
        carries no current however large the potential across it grows; the rank-``r`` pair
        factor lets dense graphs learn which pairs interact."""
        c, r = self.fields, self.edge_rank
        k = self.conductivity_floor + F.softplus(raw[:, :c])
        if insulators is not None:
            k = k * (1 - insulators)
        k_tail, k_head = lattice.endpoints(k)
        kappa = k_tail * k_head
        if r:
            q_tail, q_head = lattice.endpoints(raw[:, c:].unflatten(1, (c, r)))
            kappa = kappa * 2 * torch.sigmoid((q_tail * q_head).sum(2) / math.sqrt(r))
        return kappa

    def configure(
        self,
        h: Tensor,
        lattice: Lattice,
        source: Tensor | None = None,
        insulators: Tensor | None = None,
    ) -> tuple[System, State]:
        """Heads turn features ``(B, D, *sites)`` (and the external ``source``, if the layer
        takes one) into a system and an initial state. ``insulators`` ``(B, 1, *sites)`` marks
        sites that conduct nothing (1), e.g. the walls of a maze: the input configures the
        operator there directly."""
        if (source is None) != ("source" in self.head_sizes):
            raise ValueError("pass source= exactly when the layer has external_source=True")
        raw = dict(
            zip(
                self.head_sizes,
                pointwise(self.heads, h).split(list(self.head_sizes.values()), dim=1),
                strict=True,
            )
        )
        kappa = self.conductance(raw["kappa"], lattice, insulators)
        coupling = None if self.coupling is None else self.coupling.T @ self.coupling / self.fields
        system = System(
            lattice,
            kappa,
            mass2=self._mass2(raw),
            source=raw["source"] if source is None else source,
            gamma=F.softplus(raw["gamma"]) if "gamma" in raw else None,
            mobility=F.softplus(raw["mobility"]) if "mobility" in raw else None,
            coupling=coupling,
            quartic=F.softplus(self.quartic) if self.quartic is not None else 0.0,
            rotation=None if self.rotation is None else self.rotation - self.rotation.T,
        )
        phi0 = raw.get("phi0", h.new_zeros(h.shape[0], self.fields, *h.shape[2:]))
        pi0 = torch.zeros_like(phi0) if self.momenta else None
        s0 = torch.zeros_like(phi0[:, 0])
        return system, State(phi0, pi0, s0)

    def evolve(
        self, system: System, state: State, diagnostics: bool = False
    ) -> tuple[State, RolloutReport | None]:
        """Run the dynamics: CG equilibrium or ``steps`` integrator steps."""
        if self.solver == "cg":
            phi, info = solve(system, self.cg)  # float32 or better, also under autocast
            final = State(phi, None, state.s.to(phi.dtype))
            if not diagnostics:
                return final, None
            with torch.no_grad():  # Delta S = (H(phi0) - H(phi*)) / T0 in closed form
                system = system.to(phi.dtype)
                released = system.hamiltonian(state.phi.to(phi.dtype)) - system.hamiltonian(phi)
            return final, RolloutReport(released / system.temperature, system, final, solve=info)
        final, ledger = rollout(
            system,
            state,
            self.dt,
            self.steps,
            self.solver,
            diagnostics=diagnostics,
            options=self.cg,
        )
        if ledger is None:
            return final, None
        produced = ledger.entropy[-1] - ledger.entropy[0]
        return final, RolloutReport(produced, system, final, ledger=ledger)

    def read(self, system: System, state: State) -> Tensor:
        """``T^{mu nu}`` per site, flattened over fields and components: ``(B, C*K, *sites)``."""
        t = stress_energy(system, state.phi, state.pi).flatten(1, 2)
        return torch.asinh(t) if self.readout == "asinh" else t

    def forward(
        self,
        h: Tensor,
        lattice: Lattice,
        source: Tensor | None = None,
        diagnostics: bool = False,
        insulators: Tensor | None = None,
    ) -> tuple[Tensor, RolloutReport | None]:
        """Residual update ``h + proj(T)``; the report is ``None`` unless ``diagnostics``."""
        if lattice.dim != self.dim:
            raise ValueError(f"layer built for dim={self.dim} lattices, got {lattice}")
        system, state = self.configure(h, lattice, source, insulators)
        state, report = self.evolve(system, state, diagnostics)
        return h + pointwise(self.proj, self.read(system, state)), report
