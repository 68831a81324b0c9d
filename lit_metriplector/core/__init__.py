"""The Metriplector primitive in plain torch (no Lightning): lattices, the configured system and
its metriplectic dynamics, the CG equilibrium with implicit gradients, integrators, the
stress-energy readout and the layer that ties them together."""

from .integrators import Diagnostics, euler_step, rollout, strang_step
from .lattice import Chain1D, DenseGraph, Grid2D, Lattice, RegularGrid
from .layer import DynamicsReport, Equilibrium, Heads, MetriplectorLayer, Rollout
from .modes import exact_rollout, exact_step
from .readout import noether_charges, stress_energy, stress_energy_components
from .scan import linear_recurrence
from .solver import CGOptions, SolveInfo, conjugate_gradient, solve
from .system import State, System

__all__ = [
    "CGOptions",
    "Chain1D",
    "DenseGraph",
    "Diagnostics",
    "DynamicsReport",
    "Equilibrium",
    "Grid2D",
    "Heads",
    "Lattice",
    "MetriplectorLayer",
    "RegularGrid",
    "Rollout",
    "SolveInfo",
    "State",
    "System",
    "conjugate_gradient",
    "euler_step",
    "exact_rollout",
    "exact_step",
    "linear_recurrence",
    "noether_charges",
    "rollout",
    "solve",
    "strang_step",
    "stress_energy",
    "stress_energy_components",
]
