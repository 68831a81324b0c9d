"""``MetriplectorLayer``: features configure a system, its dynamics compute, ``T`` reads out.

    x --configure--> (kappa, mass2, rho, gamma, Gamma, phi0) --evolve--> (phi, pi)
      --stress_energy--> T --projection--> x + dx

Two configuration groups, each a frozen dataclass that LightningCLI builds from YAML:

- ``dynamics``: ``Equilibrium`` (the exact ``t -> inf`` limit of the linear dissipative branch,
  one CG solve) or ``Rollout`` (``steps`` integrator steps on a branch). Options that only make
  sense for one of them live only there, so invalid combinations cannot be written.
- ``parametrization``: ``Parametrization``, how the features configure the system
  (conductance rank and floor, screening, channel coupling, where the sources come from).

The coefficients are set per site (and per edge through the two endpoint features), so the layer
runs on any lattice of any size. What the input sets directly, bypassing ``configure``, is passed
to ``forward``: the sources (``parametrization.source = "input"``) and a ``site_mask`` of sites
the input cuts off.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .grid import GridCoefficients, euler_rollout, grid_stress_energy, pointwise, strang_rollout
from .integrators import Method, rollout
from .lattice import Grid2D, Lattice
from .readout import fast_asinh, noether_charges, stress_energy, stress_energy_components
from .solver import CGOptions, SolveInfo, solve
from .system import Diagnostics, State, System

Branch = Literal["dissipative", "hamiltonian", "full"]


@dataclass(frozen=True)
class Equilibrium:
    """The equilibrium ``A phi = rho`` of the linear dissipative branch, solved by CG.

    Args:
        solver: settings of the CG solve.
    """

    solver: CGOptions = field(default_factory=CGOptions)


@dataclass(frozen=True)
class Rollout:
    """``steps`` integrator steps of the metriplectic dynamics.

    Args:
        branch: ``"dissipative"`` (gradient flow), ``"hamiltonian"`` (conservative waves) or
            ``"full"`` (both).
        steps: integrator steps per forward pass.
        integrator: ``"strang"`` (structure preserving) or ``"euler"`` (the paper's).
        dt: initial step size (learned).
        rotation: learn the skew channel rotation ``G`` (needs momenta: not ``dissipative``).
        quartic: learn a quartic self-interaction.
        solver: CG settings of the implicit mobility steps (``strang``).
    """

    branch: Branch = "full"
    steps: int = 8
    integrator: Method = "strang"
    dt: float = 0.5
    rotation: bool = False
    quartic: bool = False
    solver: CGOptions = field(default_factory=CGOptions)

    def __post_init__(self) -> None:
        if self.rotation and self.branch == "dissipative":
            raise ValueError(
                "Rollout(rotation=True) acts on momenta, which the dissipative branch has none "
                "of: use branch='hamiltonian' or 'full', or rotation=False"
            )
        if self.steps < 1 or self.dt <= 0:
            raise ValueError(f"Rollout needs steps >= 1 and dt > 0, got {self.steps}, {self.dt}")

    @property
    def momenta(self) -> bool:
        return self.branch != "dissipative"

    @property
    def friction(self) -> bool:
        return self.branch == "full"

    @property
    def mobility(self) -> bool:
        return self.branch != "hamiltonian"


@dataclass(frozen=True)
class Parametrization:
    """How the features configure the system.

    Args:
        edge_rank: rank of the pair factor of the conductance (0: site conductivities only).
        conductivity_floor: lower bound of the site conductivity (where the site mask allows).
            With no screening, only ``I^2 / kappa`` matters and training can drive the
            conductances towards zero until the lattice falls apart numerically; a floor stops
            that.
        mass2: a fixed screening mass for every site and field; ``None`` learns it per site and
            field with a head. ``0`` solves the unscreened Poisson equation in the grounded
            (mean-zero) gauge.
        mass2_init: initial bias of the screening head; ``softplus(-6) = 2.5e-3`` gives a
            screening length of about 20 sites.
        coupling: learn the channel coupling ``W = A^T A``.
        source: ``"features"``: a head reads the sources from the features; ``"input"``: they
            are passed to ``forward`` (configured straight from the input).
        max_rate: bound every rate by construction (``None``: unbounded softplus). The
            rates become ``max_rate * sigmoid``: conductance per edge, screening, friction and
            mobility all lie in ``[0, max_rate]``; the coupling ``W`` and rotation ``G`` are
            scaled to norms below ``max_rate``; and a rollout's learned ``dt`` is capped, smoothly,
            below the stability limit of its integrator on the lattice (``stable_dt``). Explicit
            Euler is then stable at any depth and step count: ``H`` never increases.
        min_damping: floor of friction and mobility as a fraction of ``max_rate`` (they lie in
            ``[min_damping, 1] * max_rate``). Explicit Euler on momenta needs one: an undamped
            oscillator grows under it at any step size.
    """

    edge_rank: int = 4
    conductivity_floor: float = 0.0
    mass2: float | None = None
    mass2_init: float = -6.0
    coupling: bool = True
    source: Literal["features", "input"] = "features"
    max_rate: float | None = None
    min_damping: float = 0.0

    def __post_init__(self) -> None:
        if self.max_rate is None:
            if self.min_damping:
                raise ValueError(
                    "Parametrization(min_damping=...) is a fraction of max_rate: set max_rate"
                )
            return
        if self.max_rate <= 0 or not 0 <= self.min_damping < 1:
            raise ValueError(
                "Parametrization needs max_rate > 0 and 0 <= min_damping < 1, got "
                f"{self.max_rate}, {self.min_damping}"
            )
        if self.conductivity_floor >= self.max_conductivity:
            raise ValueError(
                f"conductivity_floor {self.conductivity_floor} leaves no room below the "
                f"largest site conductivity {self.max_conductivity:.4g} that "
                f"max_rate={self.max_rate} allows"
            )
        if self.mass2 is not None and self.mass2 > self.max_rate:
            raise ValueError(f"a fixed mass2 {self.mass2} exceeds max_rate={self.max_rate}")

    @property
    def max_conductivity(self) -> float:
        """Largest site conductivity ``k`` under ``max_rate``: ``kappa_e = k_tail k_head`` times
        a pair factor below 2 (rank > 0) stays below ``max_rate``."""
        return math.sqrt(self.max_rate / (2 if self.edge_rank else 1))


# Bounded step sizes stay this fraction below the sufficient stability condition.
STABILITY_MARGIN = 0.9


@functools.lru_cache(maxsize=64)
def _euler_full_limit(
    a: float, gamma: tuple[float, float], mobility: tuple[float, float], g: float
) -> float:
    """Largest explicit-Euler step for which ``H`` provably never increases on the full branch.

    With ``H`` quadratic (Hessian ``diag(A, I)``), one step changes it by exactly
    ``dt (h.u + pi.v) + dt^2/2 (u.Au + |v|^2)``, ``u = pi - Gamma h``, ``v = -h + (G - gamma) pi``,
    where ``h.u + pi.v = -h.Gamma h - pi.gamma pi``. Bounding ``u.Au <= a|u|^2`` and splitting
    the cross terms with Young's inequality (weights ``e1``, ``e2``) gives ``Delta H <= 0`` when
    ``dt <= 2 gamma_lo / (a (1 + e1) + (1 + 1/e2)(gamma_hi + g)^2)`` and
    ``dt <= 2 / (a (1 + 1/e1) Gamma_hi + (1 + e2) / Gamma_lo)``; the best weights are searched.
    """
    (g_lo, g_hi), (m_lo, m_hi) = gamma, mobility
    best = 0.0
    weights = [10 ** (k / 20) for k in range(-60, 61)]
    for e1 in weights:
        for e2 in weights:
            friction = 2 * g_lo / (a * (1 + e1) + (1 + 1 / e2) * (g_hi + g) ** 2)
            mobile = 2 / (a * (1 + 1 / e1) * m_hi + (1 + e2) / m_lo)
            best = max(best, min(friction, mobile))
    return best


def stable_dt(parametrization: Parametrization, dynamics: Rollout, degree: int) -> float:
    """The largest step ``dt`` (times ``STABILITY_MARGIN``) for which ``dynamics`` is stable on a
    lattice whose sites have at most ``degree`` neighbours, given the bounds of ``parametrization``
    (``parametrization.max_rate`` must be set); ``math.inf`` when every step size is stable.

    Gershgorin bounds the spectrum of ``A``: ``lambda_max <= a = 2 degree max(kappa) + max(m^2)
    + |W|``. Then
    - ``euler``, dissipative: ``phi <- phi - dt Gamma h`` lowers ``H`` while ``dt a Gamma <= 2``;
    - ``euler``, full: ``H`` never increases under the bound of ``_euler_full_limit`` (needs
      ``min_damping > 0``); hamiltonian: no step is stable (every undamped mode grows);
    - ``strang``: friction, rotation and mobility are exact or implicit (unconditionally stable),
      leapfrog is stable while ``dt sqrt(a) < 2``; ``dt <= sqrt(2 / a)`` keeps the energy it
      conserves, ``|pi|^2/2 + phi.(A - dt^2 A^2 / 4) phi / 2``, within a factor 2 of ``H``;
    - ``exact``: stable at any step.
    """
    r = parametrization.max_rate
    if r is None:
        raise ValueError("stable_dt needs bounded rates: Parametrization(max_rate=...)")
    if dynamics.quartic:
        raise ValueError("a quartic term has no bounded rate: use quartic=False with max_rate")
    mass2 = r if parametrization.mass2 is None else parametrization.mass2
    a = 2 * degree * r + mass2 + (r if parametrization.coupling else 0.0)
    floor = parametrization.min_damping * r
    if dynamics.integrator == "exact":
        return math.inf
    if dynamics.integrator == "strang":
        limit = math.inf if dynamics.branch == "dissipative" else math.sqrt(2 / a)
    elif dynamics.integrator == "euler":
        if dynamics.branch == "hamiltonian":
            raise ValueError(
                "explicit Euler has no stable step without damping (every undamped mode grows): "
                "use branch='full' with Parametrization(min_damping > 0), or integrator='strang'"
            )
        if dynamics.branch == "dissipative":
            limit = 2 / (a * r)
        else:
            if floor <= 0:
                raise ValueError(
                    "explicit Euler on the full branch needs damping everywhere: set "
                    "Parametrization(min_damping=...) > 0 (e.g. 0.5), or use integrator='strang'"
                )
            g = r if dynamics.rotation else 0.0
            limit = _euler_full_limit(a, (floor, r), (floor, r), g)
    else:
        raise ValueError(f"no stability limit for integrator {dynamics.integrator!r}")
    return STABILITY_MARGIN * limit


def _on_channels(linear: nn.Linear, h: Tensor) -> Tensor:
    """Apply a linear map to the channel axis of ``(B, D, *sites)`` (any lattice)."""
    return linear(h.movedim(1, -1)).movedim(-1, 1)


@dataclass
class DynamicsReport:
    """What the dynamics of one layer did, for monitors and images: an equilibrium solve or a
    rollout. ``entropy_produced`` is the total ``Delta S`` per sample; ``ledger`` holds per-step
    ledgers (rollouts); ``solve`` the CG outcome (equilibria); ``system`` and ``state`` the
    configured system and the final state."""

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
        dynamics: ``Equilibrium`` (one CG solve) or ``Rollout`` (integrator steps).
        parametrization: how the features configure the system.
        readout: transform of ``T`` before the projection; ``"asinh"`` tames its scale.
    """

    def __init__(
        self,
        features: int,
        dim: int = 2,
        fields: int = 4,
        dynamics: Equilibrium | Rollout | None = None,
        parametrization: Parametrization | None = None,
        readout: Literal["linear", "asinh"] = "asinh",
    ) -> None:
        super().__init__()
        self.dynamics = dynamics = dynamics or Equilibrium()
        self.config = parametrization = parametrization or Parametrization()
        self.fields, self.dim, self.readout = fields, dim, readout
        rollout_ = isinstance(dynamics, Rollout)
        self.momenta = rollout_ and dynamics.momenta
        sizes = {"kappa": fields * (1 + parametrization.edge_rank)}
        if parametrization.mass2 is None:
            sizes["mass2"] = fields
        if parametrization.source == "features":
            sizes["source"] = fields
        if rollout_:
            sizes["phi0"] = fields
            if dynamics.friction:
                sizes["gamma"] = fields
            if dynamics.mobility:
                sizes["mobility"] = fields
        self.coefficient_sizes = sizes
        self.coefficients = nn.Linear(features, sum(sizes.values()))
        if parametrization.mass2 is None:
            with torch.no_grad():  # start weakly screened: information must travel far
                self.coefficient_parameters("mass2")[1].fill_(parametrization.mass2_init)
        self.coupling = (
            nn.Parameter(0.1 * torch.randn(fields, fields)) if parametrization.coupling else None
        )
        quartic = rollout_ and dynamics.quartic
        rotation = rollout_ and dynamics.rotation
        self.quartic = nn.Parameter(torch.tensor(-2.0)) if quartic else None
        self.rotation = nn.Parameter(0.1 * torch.randn(fields, fields)) if rotation else None
        # the step size of the integrators (an equilibrium has no time step: no unused parameter)
        self.log_dt = nn.Parameter(torch.tensor(math.log(dynamics.dt))) if rollout_ else None
        if rollout_ and parametrization.max_rate is not None:
            stable_dt(parametrization, dynamics, 2 * max(dim, 1))  # unstable combinations fail here
        self.components = stress_energy_components(dim)
        self.proj = nn.Linear(fields * len(self.components), features)

    @property
    def fused_grid(self) -> bool:
        """Whether ``forward`` on a ``Grid2D`` takes the fused backend (``core.grid``): a
        ``Rollout`` of a linear system with sources from the features, ``euler`` steps, or
        ``strang`` steps whose mobility solve is the Jacobi CG that backend implements (in
        ``solver.dtype`` or better). Anything else runs ``forward_generic``, which honours every
        ``CGOptions`` field."""
        dynamics = self.dynamics
        if not isinstance(dynamics, Rollout) or self.dim != 2 or dynamics.quartic:
            return False
        if self.config.source != "features":
            return False
        return dynamics.integrator == "euler" or (
            dynamics.integrator == "strang" and dynamics.solver.preconditioner == "jacobi"
        )

    def grid_coefficients(self, x: Tensor) -> tuple[GridCoefficients, Tensor]:
        """``configure`` on features ``(B, D, H, W)``: the configured system and ``phi0``, in
        float32 (or better) whatever autocast chose for ``x``."""
        raw = pointwise(x, self.coefficients.weight, self.coefficients.bias)
        dtype = torch.promote_types(raw.dtype, getattr(torch, self.dynamics.solver.dtype))
        with torch.autocast(x.device.type, enabled=False):
            raw = raw.to(dtype)
            parts = dict(
                zip(
                    self.coefficient_sizes,
                    raw.split(list(self.coefficient_sizes.values()), 1),
                    strict=True,
                )
            )
            c, r, config = self.fields, self.config.edge_rank, self.config
            u = parts["kappa"][:, :c]
            if config.max_rate is None:
                k = config.conductivity_floor + F.softplus(u)
            else:
                floor = config.conductivity_floor
                k = floor + (config.max_conductivity - floor) * torch.sigmoid(u)
            kv, kh = k[:, :, :-1] * k[:, :, 1:], k[..., :-1] * k[..., 1:]
            if r:
                q = parts["kappa"][:, c:].unflatten(1, (c, r))
                scale = 1 / math.sqrt(r)
                kv = kv * 2 * torch.sigmoid((q[..., :-1, :] * q[..., 1:, :]).sum(2) * scale)
                kh = kh * 2 * torch.sigmoid((q[..., :-1] * q[..., 1:]).sum(2) * scale)
            damping = config.min_damping
            coefficients = GridCoefficients(
                kv,
                kh,
                self._mass2(parts),
                parts["source"],
                self.rate(parts["gamma"], damping) if "gamma" in parts else None,
                self.rate(parts["mobility"], damping) if "mobility" in parts else None,
                None if self.coupling is None else self.coupling_matrix().to(dtype),
                None if self.rotation is None else self.rotation_matrix().to(dtype),
            )
        return coefficients, parts["phi0"]

    def coefficient_parameters(self, name: str) -> tuple[Tensor, Tensor]:
        """Views of the weight rows and biases of one head (e.g. ``"kappa"``), for custom
        initialisation: the first ``fields`` rows of ``"kappa"`` give the site conductivities."""
        start = 0
        for key, size in self.coefficient_sizes.items():
            if key == name:
                rows = slice(start, start + size)
                return self.coefficients.weight[rows], self.coefficients.bias[rows]
            start += size
        raise KeyError(f"no coefficient {name!r}; coefficients: {list(self.coefficient_sizes)}")

    def rate(self, raw: Tensor, floor: float = 0.0) -> Tensor:
        """A nonnegative rate from a head: ``softplus``, or with ``Parametrization(max_rate=r)``
        ``r (floor + (1 - floor) sigmoid)`` in ``[floor r, r]``."""
        r = self.config.max_rate
        if r is None:
            return F.softplus(raw)
        return r * (floor + (1 - floor) * torch.sigmoid(raw))

    def _mass2(self, raw: dict[str, Tensor]) -> Tensor | None:
        fixed = self.config.mass2
        if fixed is None:
            return self.rate(raw["mass2"])
        return raw["kappa"].new_tensor(fixed) if fixed > 0 else None

    def coupling_matrix(self) -> Tensor | None:
        """``W = A^T A / C``; bounded: ``r A^T A / (1 + |A|_F^2)``, spectral norm below ``r``."""
        if self.coupling is None:
            return None
        w = self.coupling.T @ self.coupling
        r = self.config.max_rate
        return w / self.fields if r is None else r * w / (1 + self.coupling.square().sum())

    def rotation_matrix(self) -> Tensor | None:
        """``G = B - B^T``; bounded: ``r G / (1 + |G|_F)``, spectral norm below ``r``."""
        if self.rotation is None:
            return None
        g = self.rotation - self.rotation.T
        r = self.config.max_rate
        return g if r is None else r * g / (1 + g.square().sum().sqrt())

    @property
    def dt(self) -> Tensor:
        return self.log_dt.exp()

    def time_step(self, lattice: Lattice) -> Tensor:
        """The step size on ``lattice``: the learned ``dt``; with bounded rates smoothly capped
        below the integrator's stability limit, ``dt_max tanh(dt / dt_max)``."""
        if self.config.max_rate is None:
            return self.dt
        degree = 2 * lattice.dim if lattice.dim else lattice.num_sites - 1
        limit = stable_dt(self.config, self.dynamics, degree)
        return self.dt if math.isinf(limit) else limit * torch.tanh(self.dt / limit)

    def conductance(self, raw: Tensor, lattice: Lattice, site_mask: Tensor | None = None) -> Tensor:
        """``kappa_e = k_tail k_head [2 sigmoid(q_tail . q_head / sqrt(r))]``: each site has a
        conductivity ``k = floor + softplus(u)``, zero where ``site_mask`` is 0, and an edge
        conducts only if both ends do. A masked site is then isolated from all its neighbours
        rather than forming a weakly attached network of its own (near-zero modes that stall CG),
        and carries no current however large the potential across it grows; the rank-``r`` pair
        factor lets dense graphs learn which pairs interact."""
        c, r = self.fields, self.config.edge_rank
        floor = self.config.conductivity_floor
        if self.config.max_rate is None:
            k = floor + F.softplus(raw[:, :c])
        else:  # kappa_e <= k_max^2 x (pair factor < 2 or 1) = max_rate
            k = floor + (self.config.max_conductivity - floor) * torch.sigmoid(raw[:, :c])
        if site_mask is not None:
            k = k * site_mask
        k_tail, k_head = lattice.endpoints(k)
        kappa = k_tail * k_head
        if r:
            q_tail, q_head = lattice.endpoints(raw[:, c:].unflatten(1, (c, r)))
            kappa = kappa * 2 * torch.sigmoid((q_tail * q_head).sum(2) / math.sqrt(r))
        return kappa

    def configure(
        self,
        x: Tensor,
        lattice: Lattice,
        source: Tensor | None = None,
        site_mask: Tensor | None = None,
    ) -> tuple[System, State]:
        """Turn features ``(B, D, *sites)`` (and the input's ``source``, when
        ``parametrization.source == "input"``) into a system and an initial state. ``site_mask``
        ``(B, 1, *sites)`` is 0 on sites the input cuts off (no conductance), e.g. the walls of a
        maze: the input configures the operator there directly."""
        if (source is None) != (self.config.source == "features"):
            where = "given to forward(source=...)" if source is not None else "missing"
            raise ValueError(
                f"this layer reads its sources from the {self.config.source} "
                f"(Parametrization(source={self.config.source!r})), but a source is {where}"
            )
        sizes = list(self.coefficient_sizes.values())
        raw = dict(
            zip(
                self.coefficient_sizes,
                _on_channels(self.coefficients, x).split(sizes, dim=1),
                strict=True,
            )
        )
        kappa = self.conductance(raw["kappa"], lattice, site_mask)
        damping = self.config.min_damping
        system = System(
            lattice,
            kappa,
            mass2=self._mass2(raw),
            source=raw["source"] if source is None else source,
            gamma=self.rate(raw["gamma"], damping) if "gamma" in raw else None,
            mobility=self.rate(raw["mobility"], damping) if "mobility" in raw else None,
            coupling=self.coupling_matrix(),
            quartic=F.softplus(self.quartic) if self.quartic is not None else 0.0,
            rotation=self.rotation_matrix(),
        )
        phi0 = raw.get("phi0", x.new_zeros(x.shape[0], self.fields, *x.shape[2:]))
        pi0 = torch.zeros_like(phi0) if self.momenta else None
        s0 = torch.zeros_like(phi0[:, 0])
        return system, State(phi0, pi0, s0)

    def evolve(
        self, system: System, state: State, diagnostics: bool = False
    ) -> tuple[State, DynamicsReport | None]:
        """Run the dynamics: the CG equilibrium or ``steps`` integrator steps."""
        dynamics = self.dynamics
        if isinstance(dynamics, Equilibrium):
            phi, info = solve(system, dynamics.solver)  # float32 or better, also under autocast
            final = State(phi, None, state.s.to(phi.dtype))
            if not diagnostics:
                return final, None
            with torch.no_grad():  # Delta S = (H(phi0) - H(phi*)) / T0 in closed form
                system = system.to(phi.dtype)
                released = system.hamiltonian(state.phi.to(phi.dtype)) - system.hamiltonian(phi)
            return final, DynamicsReport(released / system.temperature, system, final, solve=info)
        final, ledger = rollout(
            system,
            state,
            self.time_step(system.lattice),
            dynamics.steps,
            dynamics.integrator,
            diagnostics=diagnostics,
            options=dynamics.solver,
        )
        if ledger is None:
            return final, None
        produced = ledger.entropy[-1] - ledger.entropy[0]
        return final, DynamicsReport(produced, system, final, ledger=ledger)

    def read(self, system: System, state: State) -> Tensor:
        """``T^{mu nu}`` per site, flattened over fields and components: ``(B, C*K, *sites)``."""
        t = stress_energy(system, state.phi, state.pi).flatten(1, 2)
        return torch.asinh(t) if self.readout == "asinh" else t

    def forward(
        self,
        x: Tensor,
        lattice: Lattice,
        source: Tensor | None = None,
        diagnostics: bool = False,
        site_mask: Tensor | None = None,
    ) -> tuple[Tensor, DynamicsReport | None]:
        """Residual update ``x + proj(T)``; the report is ``None`` unless ``diagnostics``. Takes
        the fused grid backend where it applies (``fused_grid``), else ``forward_generic``."""
        if self.fused_grid and isinstance(lattice, Grid2D) and site_mask is None and source is None:
            update, report, _ = self.mix(x, diagnostics)
            return x + update, report
        return self.forward_generic(x, lattice, source, diagnostics, site_mask)

    def forward_generic(
        self,
        x: Tensor,
        lattice: Lattice,
        source: Tensor | None = None,
        diagnostics: bool = False,
        site_mask: Tensor | None = None,
    ) -> tuple[Tensor, DynamicsReport | None]:
        """``forward`` on any lattice through ``configure``, ``evolve`` and ``read``: the
        reference the fused backend is tested against."""
        if lattice.dim != self.dim:
            raise ValueError(f"layer built for dim={self.dim} lattices, got {lattice}")
        system, state = self.configure(x, lattice, source, site_mask)
        state, report = self.evolve(system, state, diagnostics)
        return x + _on_channels(self.proj, self.read(system, state)), report

    def mix(
        self, x: Tensor, diagnostics: bool = False
    ) -> tuple[Tensor, DynamicsReport | None, Tensor]:
        """The fused grid path (``fused_grid``): the update ``proj(asinh T)`` of features
        ``(B, D, H, W)`` (not added to them), the report (``None`` unless ``diagnostics``) and
        the Noether charges per site ``(B, C, 6)`` (spatial means of ``T``)."""
        if not self.fused_grid:
            raise ValueError(
                "mix() is the fused grid path: a Rollout (euler, or strang with a Jacobi solve) of "
                "a linear system on Grid2D with sources from the features"
            )
        lattice = Grid2D(*x.shape[-2:])
        c, phi0 = self.grid_coefficients(x)
        with torch.autocast(x.device.type, enabled=False):
            dt = self.time_step(lattice)
            dynamics = self.dynamics
            if dynamics.integrator == "euler":
                state, ledger = euler_rollout(
                    c, phi0, dt, dynamics.steps, self.momenta, diagnostics
                )
            else:
                state, ledger = strang_rollout(
                    c, phi0, dt, dynamics.steps, dynamics.solver, self.momenta, diagnostics
                )
            system = c.system() if diagnostics else None
            t = grid_stress_energy(c, state.phi, state.pi)
            charges = noether_charges(t) / (t.shape[-1] * t.shape[-2])  # per site
            t = t.flatten(1, 2)
            if self.readout == "asinh":
                t = fast_asinh(t)
        update = pointwise(t.to(x.dtype), self.proj.weight, self.proj.bias)
        report = None
        if ledger is not None:
            produced = ledger.entropy[-1] - ledger.entropy[0]
            report = DynamicsReport(produced, system, state, ledger=ledger)
        return update, report, charges
