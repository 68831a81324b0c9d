"""Discrete calculus: grad and div are an exact adjoint pair; averaging conserves sums."""

import pytest
import torch

from lit_metriplector.core import Grid2D

from .conftest import random_system


def test_grad_div_adjoint(lattice):
    g = torch.Generator().manual_seed(1)
    phi = torch.randn(2, 3, *lattice.site_shape, dtype=torch.float64, generator=g)
    edges = torch.randn(2, 3, *lattice.edge_shape, dtype=torch.float64, generator=g)
    edges = edges * lattice.edge_mask(edges)
    lhs = (lattice.grad(phi) * edges).sum()
    rhs = -(phi * lattice.div(edges)).sum()
    assert torch.allclose(lhs, rhs, rtol=0, atol=1e-12)


def test_grad_vanishes_off_lattice_and_on_constants(lattice):
    phi = torch.randn(1, 2, *lattice.site_shape, dtype=torch.float64)
    grad = lattice.grad(phi)
    assert torch.equal(grad * (1 - lattice.edge_mask(grad)), torch.zeros_like(grad))
    assert torch.allclose(lattice.grad(torch.ones_like(phi)), torch.zeros_like(grad))


def test_edge_to_site_conserves_sum(lattice):
    q = torch.rand(2, 3, *lattice.edge_shape, dtype=torch.float64)
    q = q * lattice.edge_mask(q)
    assert torch.allclose(lattice.edge_to_site(q).sum(), q.sum())


def test_edge_count():
    grid = Grid2D(3, 4)
    like = torch.zeros(())
    # 3 rows of 3 horizontal edges and 2 rows of 4 vertical edges
    assert grid.edge_mask(like).sum() == 3 * 3 + 2 * 4
    assert grid.diameter == 5


def test_operator_is_symmetric_with_closed_form_diagonal(lattice):
    system, _ = random_system(lattice, batch=1, fields=2)
    n = 2 * lattice.num_sites
    basis = torch.eye(n, dtype=torch.float64).view(n, 2, *lattice.site_shape)
    columns = torch.stack([system.operator(e.unsqueeze(0))[0].flatten() for e in basis], 1)
    assert torch.allclose(columns, columns.T, atol=1e-12)
    assert torch.linalg.eigvalsh(columns).min() > -1e-10  # positive semi-definite
    diag = system.operator_diagonal(basis[:1]).flatten()
    assert torch.allclose(diag, columns.diagonal(), atol=1e-12)


def test_force_is_gradient_of_hamiltonian(lattice):
    system, state = random_system(lattice)
    phi = state.phi.clone().requires_grad_()
    (grad,) = torch.autograd.grad(system.hamiltonian(phi).sum(), phi)
    assert torch.allclose(grad, system.force(phi), atol=1e-10)


@pytest.mark.parametrize("shape", [(0, 3), (2, -1)])
def test_bad_shapes_raise(shape):
    with pytest.raises(ValueError, match="positive"):
        Grid2D(*shape)
