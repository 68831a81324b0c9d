"""Bounded coefficients (``Parametrization(max_rate, min_damping)``): every rate in its box
whatever the features, the step capped below the integrator's stability limit, and the rollouts
stable."""

import math

import pytest
import torch

from lit_metriplector.core import DenseGraph, Grid2D, MetriplectorLayer, Parametrization, Rollout
from lit_metriplector.core.layer import stable_dt

BOUNDED = Parametrization(edge_rank=2, max_rate=1.0, min_damping=0.5)


def saturated(layer: MetriplectorLayer, scale: float = 50.0) -> MetriplectorLayer:
    """Parametrization with huge weights: every sigmoid sits at one of its ends."""
    with torch.no_grad():
        layer.coefficients.weight.normal_(0, scale)
        layer.coefficients.bias.normal_(0, scale)
        if layer.coupling is not None:
            layer.coupling.normal_(0, scale)
        if layer.rotation is not None:
            layer.rotation.normal_(0, scale)
        layer.log_dt.fill_(math.log(100.0))  # asks for a step far beyond the limit
    return layer


def test_rates_stay_in_their_boxes_whatever_the_features():
    torch.manual_seed(0)
    dynamics = Rollout("full", 4, "euler", 0.1, rotation=True)
    layer = saturated(MetriplectorLayer(8, 2, 3, dynamics, BOUNDED)).double()
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    system, _ = layer.configure(x, Grid2D(5, 6))
    r, floor = BOUNDED.max_rate * (1 + 1e-12), BOUNDED.min_damping * BOUNDED.max_rate
    assert system.kappa.min() >= 0 and system.kappa.max() <= r  # saturated: at the bound
    assert system.mass2.min() >= 0 and system.mass2.max() <= r
    for rate in (system.gamma, system.mobility):
        assert rate.min() >= floor * (1 - 1e-12) and rate.max() <= r
    assert torch.linalg.matrix_norm(system.coupling, 2) <= r
    assert torch.linalg.matrix_norm(system.rotation, 2) <= r
    assert torch.allclose(system.rotation, -system.rotation.T)
    dt = layer.time_step(Grid2D(5, 6))
    assert 0 < dt <= stable_dt(BOUNDED, dynamics, 4)


def test_unbounded_coefficients_are_unchanged():
    layer = MetriplectorLayer(8, 2, 3, Rollout("full", 2, "euler", 0.3), Parametrization())
    assert torch.allclose(layer.time_step(Grid2D(3, 3)), torch.tensor(0.3))
    raw = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.allclose(layer.rate(raw), torch.nn.functional.softplus(raw))


def test_invalid_bounds_fail_when_configured():
    with pytest.raises(ValueError, match="min_damping"):
        Parametrization(min_damping=0.5)
    with pytest.raises(ValueError, match="max_rate > 0"):
        Parametrization(max_rate=0.0)
    with pytest.raises(ValueError, match="conductivity_floor"):
        Parametrization(max_rate=1.0, conductivity_floor=2.0)
    with pytest.raises(ValueError, match="damping everywhere"):
        MetriplectorLayer(8, 2, 3, Rollout("full", 2, "euler"), Parametrization(max_rate=1.0))
    with pytest.raises(ValueError, match="no stable step"):
        MetriplectorLayer(8, 2, 3, Rollout("hamiltonian", 2, "euler"), BOUNDED)
    with pytest.raises(ValueError, match="quartic"):
        MetriplectorLayer(8, 2, 3, Rollout("full", 2, "strang", quartic=True), BOUNDED)


def test_stability_limits():
    full = Rollout("full", 8, "euler", rotation=True)
    euler, strang = stable_dt(BOUNDED, full, 4), stable_dt(BOUNDED, Rollout("full", 8), 4)
    assert 0 < euler < strang < 2 / math.sqrt(2 * 4 * 1.0)  # leapfrog: dt sqrt(a) < 2
    assert stable_dt(BOUNDED, Rollout("dissipative", 8, "strang"), 4) == math.inf
    assert stable_dt(BOUNDED, Rollout("dissipative", 8, "euler"), 4) == pytest.approx(
        0.9 * 2 / (2 * 4 + 1 + 1)
    )
    # more neighbours, stiffer operator, smaller step
    assert stable_dt(BOUNDED, full, 10) < euler
    dense = MetriplectorLayer(8, 0, 3, full, BOUNDED)
    assert dense.time_step(DenseGraph(12)) < stable_dt(BOUNDED, full, 10)


@pytest.mark.parametrize("branch", ["full", "dissipative"])
def test_euler_never_raises_the_energy_even_saturated(branch):
    """The sufficient condition of ``stable_dt``: ``H`` is non-increasing at every step, with
    the rates at their extremes and far more steps than any network uses."""
    torch.manual_seed(1)
    dynamics = Rollout(branch, 200, "euler", 1.0, rotation=branch == "full")
    for seed in range(3):
        torch.manual_seed(seed)
        layer = saturated(MetriplectorLayer(6, 2, 3, dynamics, BOUNDED)).double()
        x = torch.randn(2, 6, 7, 7, dtype=torch.float64)
        system, state = layer.configure(x, Grid2D(7, 7))
        _, report = layer.evolve(system, state, diagnostics=True)
        h = report.ledger.hamiltonian
        assert torch.isfinite(h).all()
        assert (h.diff(dim=0) <= 1e-9 * h.abs().amax(0)).all()
        assert (report.ledger.entropy_production() >= 0).all()


def test_strang_stays_bounded_even_saturated():
    torch.manual_seed(2)
    dynamics = Rollout("full", 100, "strang", 1.0, rotation=True)
    layer = saturated(MetriplectorLayer(6, 2, 3, dynamics, BOUNDED)).double()
    x = torch.randn(2, 6, 6, 6, dtype=torch.float64)
    system, state = layer.configure(x, Grid2D(6, 6))
    _, report = layer.evolve(system, state, diagnostics=True)
    h = report.ledger.hamiltonian
    scale = h[0].abs() + system.hamiltonian(torch.zeros_like(state.phi)).abs() + 1
    assert torch.isfinite(h).all() and (h <= h[0] + 2 * scale).all()
    assert (report.ledger.entropy_production() >= -1e-9).all()
