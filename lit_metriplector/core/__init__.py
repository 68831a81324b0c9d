"""The Metriplector primitive in plain torch (no Lightning): lattices, the configured system and
its metriplectic dynamics, the CG equilibrium with implicit gradients, integrators, the
stress-energy readout and the layer that ties them together.

These names are the core's API: the rest of the package imports nothing else from it
(``tests/test_architecture.py`` checks)."""

from .coupling import CoupledSystem, PartitionCoupling, SharedCoupling
from .fronts import arrival_times, front_step, on_shortest_paths
from .grid import pointwise
from .integrators import cayley, euler_step, rollout, strang_step
from .lattice import Chain1D, DenseGraph, Grid2D, Lattice, RegularGrid
from .layer import (
    DynamicsReport,
    Equilibrium,
    MetriplectorLayer,
    Parametrization,
    Rollout,
    stable_dt,
)
from .modes import (
    drive_gain,
    exact_rollout,
    exact_step,
    fixed_point,
    from_eigen,
    mode_system,
    modulated_map,
    modulated_rollout,
    modulated_step,
    propagator,
    stiffness,
)
from .readout import fast_asinh, noether_charges, stress_energy, stress_energy_components
from .scan import cmul, linear_recurrence, matrix_recurrence
from .solver import CGOptions, SolveInfo, SolveTally, conjugate_gradient, record_solve, solve
from .system import Diagnostics, State, System, ledger_dtype

__all__ = [
    "CGOptions",
    "Chain1D",
    "CoupledSystem",
    "DenseGraph",
    "Diagnostics",
    "DynamicsReport",
    "Equilibrium",
    "Grid2D",
    "Lattice",
    "MetriplectorLayer",
    "Parametrization",
    "RegularGrid",
    "Rollout",
    "PartitionCoupling",
    "SharedCoupling",
    "SolveInfo",
    "SolveTally",
    "State",
    "System",
    "arrival_times",
    "cayley",
    "cmul",
    "conjugate_gradient",
    "drive_gain",
    "euler_step",
    "exact_rollout",
    "exact_step",
    "fast_asinh",
    "fixed_point",
    "from_eigen",
    "front_step",
    "ledger_dtype",
    "linear_recurrence",
    "matrix_recurrence",
    "mode_system",
    "modulated_map",
    "modulated_rollout",
    "modulated_step",
    "noether_charges",
    "on_shortest_paths",
    "pointwise",
    "propagator",
    "record_solve",
    "rollout",
    "solve",
    "stable_dt",
    "stiffness",
    "strang_step",
    "stress_energy",
    "stress_energy_components",
]
