"""Metriplectic structure of the implemented vector field, for random configured systems:
L dS = 0, M dE = 0, dE/dt = 0 and dS/dt >= 0, with dE and dS taken by autograd (float64)."""

import pytest
import torch

from lit_metriplector.core import State

from .conftest import random_system

BRANCHES = ["full", "hamiltonian", "dissipative"]


def autograd_gradients(system, state):
    """dE/dz and dS/dz by autograd (dS/dz is (0, 0, 1) but we do not assume it)."""
    leaves = State(*(None if t is None else t.clone().requires_grad_() for t in state))
    inputs = [t for t in leaves if t is not None]
    grad_e = torch.autograd.grad(system.energy(leaves).sum(), inputs, allow_unused=True)
    grad_s = torch.autograd.grad(system.entropy(leaves.s).sum(), inputs, allow_unused=True)

    def as_state(grads):
        grads = [
            torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs, strict=False)
        ]
        return (
            State(grads[0], grads[1], grads[2])
            if state.pi is not None
            else State(grads[0], None, grads[1])
        )

    return as_state(grad_e), as_state(grad_s)


def pair(a: State, b: State) -> torch.Tensor:
    """Per-sample pairing <a, b> of covector and vector."""
    return sum((x * y).flatten(1).sum(1) for x, y in zip(a, b, strict=False) if x is not None)


def norm(a: State) -> torch.Tensor:
    return pair(a, a).sqrt()


@pytest.mark.parametrize("branch", BRANCHES)
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_degeneracy_and_conservation(lattice, branch, temperature):
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        system, state = random_system(lattice, branch=branch, temperature=temperature, generator=g)
        grad_e, grad_s = autograd_gradients(system, state)
        closed = system.energy_gradient(state)
        for x, y in zip(grad_e, closed, strict=False):
            if x is not None:
                assert torch.allclose(x, y, atol=1e-10)
        scale = norm(grad_e)
        # L dS = 0 and M dE = 0
        assert norm(system.poisson(grad_s)).max() <= 1e-10
        assert (norm(system.metric(state, grad_e)) / scale).max() <= 1e-10
        # along the implemented vector field: dE/dt = 0, dS/dt >= 0
        z_dot = system.vector_field(state)
        de_dt = pair(grad_e, z_dot)
        ds_dt = pair(grad_s, z_dot)
        assert (de_dt.abs() / (scale * norm(z_dot))).max() <= 1e-10
        assert (ds_dt >= 0).all()
        if branch == "hamiltonian":
            assert ds_dt.abs().max() <= 1e-12
        else:
            assert (ds_dt > 0).all()  # random systems dissipate


@pytest.mark.parametrize("branch", BRANCHES)
def test_brackets_skew_and_psd(lattice, branch):
    """L is skew, M symmetric positive semi-definite, on random covectors."""
    system, state = random_system(lattice, branch=branch)
    g = torch.Generator().manual_seed(5)

    def covector():
        return State(
            *(
                None if t is None else torch.randn(t.shape, dtype=t.dtype, generator=g)
                for t in state
            )
        )

    a, b = covector(), covector()
    assert torch.allclose(pair(a, system.poisson(b)), -pair(system.poisson(a), b), atol=1e-10)
    assert torch.allclose(
        pair(a, system.metric(state, b)), pair(system.metric(state, a), b), atol=1e-10
    )
    assert (pair(a, system.metric(state, a)) >= -1e-12).all()


def test_equations_with_unit_temperature(lattice):
    """With T0 = 1: dphi = pi - Gamma h, dpi = -h + G pi - gamma pi, ds = gamma pi^2 + Gamma h^2."""
    system, state = random_system(lattice, branch="full")
    z = system.vector_field(state)
    h = system.force(state.phi)
    g_pi = torch.einsum("ab,nb...->na...", system.rotation, state.pi)
    assert torch.allclose(z.phi, state.pi - system.mobility * h)
    assert torch.allclose(z.pi, -h + g_pi - system.gamma * state.pi)
    expected = (system.gamma * state.pi**2 + system.mobility * h**2).sum(1)
    assert torch.allclose(z.s, expected)
