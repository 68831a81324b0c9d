"""The Metriplector primitive in plain torch (no Lightning): lattices, the configured system and
its metriplectic dynamics, the CG equilibrium with implicit gradients, integrators, the
stress-energy readout and the layer that ties them together."""

from .integrators import Diagnostics, euler_step, rollout, strang_step
from .lattice import Chain1D, DenseGraph, Grid2D, Lattice, RegularGrid
from .layer import MetriplectorLayer, RolloutReport
from .readout import noether_charges, stress_energy, stress_energy_components
from .solver import CGOptions, SolveInfo, conjugate_gradient, solve
from .system import State, System

__all__ = [
    "CGOptions",
    "Chain1D",
    "DenseGraph",
    "Diagnostics",
    "Grid2D",
    "Lattice",
    "MetriplectorLayer",
    "RegularGrid",
    "RolloutReport",
    "SolveInfo",
    "State",
    "System",
    "conjugate_gradient",
    "euler_step",
    "noether_charges",
    "rollout",
    "solve",
    "strang_step",
    "stress_energy",
    "stress_energy_components",
]
