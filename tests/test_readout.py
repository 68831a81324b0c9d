"""Stress-energy readout: sum_x T^00 = H, shift invariance without a potential, locality."""

import torch

from lit_metriplector.core import (
    Grid2D,
    MetriplectorLayer,
    noether_charges,
    stress_energy,
    stress_energy_components,
)

from .conftest import random_system


def test_energy_density_sums_to_hamiltonian(lattice):
    for branch in ("full", "dissipative"):
        system, state = random_system(lattice, branch=branch)
        t = stress_energy(system, state.phi, state.pi)
        assert t.shape[2] == len(stress_energy_components(lattice.dim))
        total = noether_charges(t)[:, :, 0].sum(1)
        assert torch.allclose(total, system.hamiltonian(state.phi, state.pi), atol=1e-10)


def test_invariant_under_constant_shift_without_potential(lattice):
    system, state = random_system(lattice, quartic=0.0)
    free = system.replace(mass2=None, coupling=None, source=None)
    shift = torch.randn(state.phi.shape[:2], dtype=torch.float64)
    shift = shift.view(*shift.shape, *[1] * len(lattice.site_shape))
    t = stress_energy(free, state.phi, state.pi)
    assert torch.allclose(stress_energy(free, state.phi + shift, state.pi), t, atol=1e-10)
    # with a mass the shift shows
    assert not torch.allclose(stress_energy(system, state.phi + shift, state.pi), t)


def test_stress_energy_is_local():
    lattice = Grid2D(9, 9)
    system, state = random_system(lattice, quartic=0.0)
    bumped = state.phi.clone()
    bumped[:, :, 4, 4] += 1.0
    changed = (
        stress_energy(system, bumped, state.pi) - stress_energy(system, state.phi, state.pi)
    ).abs()
    rows, cols = changed.amax((0, 1, 2)).nonzero(as_tuple=True)
    assert (rows - 4).abs().max() <= 1 and (cols - 4).abs().max() <= 1


def test_layer_runs_on_unseen_lattice_sizes():
    """Nothing in the layer depends on the lattice size."""
    layer = MetriplectorLayer(features=6, dim=2, fields=2)
    for size in (5, 11):
        out, _ = layer(torch.randn(2, 6, size, size), Grid2D(size, size))
        assert out.shape == (2, 6, size, size)
