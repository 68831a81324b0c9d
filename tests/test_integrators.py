"""Integrators: strang conserves the ledger up to a bounded O(dt^2) error, euler drifts; the
exact sub-steps move energy into entropy without loss; entropy never decreases."""

import pytest
import torch

from lit_metriplector.core import Chain1D, Grid2D, State, System, exact_step, rollout
from lit_metriplector.core.integrators import friction_step, mobility_step, rotation_step
from lit_metriplector.core.modes import modulated_rollout, stiffness
from lit_metriplector.core.scan import matrix_recurrence
from lit_metriplector.core.solver import CGOptions

from .conftest import random_system

TIGHT = CGOptions(tol=1e-13, dtype=torch.float64)


def relative_error(diag):
    return diag.relative_drift().max().item()


def hamiltonian_system(lattice=None):
    lattice = lattice or Chain1D(8)
    system, state = random_system(lattice, batch=2, fields=2, branch="hamiltonian")
    return system, state._replace(phi=0.5 * state.phi, pi=0.5 * state.pi)


@pytest.mark.slow
def test_strang_conserves_energy_over_long_runs_where_euler_drifts():
    system, state = hamiltonian_system()
    _, strang = rollout(system, state, 0.02, 10_000, "strang", diagnostics=True)
    _, euler = rollout(system, state, 0.02, 1_000, "euler", diagnostics=True)
    assert relative_error(strang) <= 1e-3
    assert relative_error(euler) > 0.1  # euler multiplies the energy by (1 + dt^2 w^2) per step


def test_strang_energy_error_is_second_order():
    system, state = hamiltonian_system(Grid2D(3, 3))
    errors = [
        relative_error(rollout(system, state, dt, round(2 / dt), "strang", diagnostics=True)[1])
        for dt in (0.1, 0.05)
    ]
    assert 3.0 < errors[0] / errors[1] < 5.0


def test_friction_step_moves_kinetic_energy_into_entropy_exactly(lattice):
    system, state = random_system(lattice, branch="full")
    before = system.energy(state)
    after_state = friction_step(system, state, 0.3)
    assert (after_state.pi.abs() <= state.pi.abs()).all()
    assert ((system.energy(after_state) - before).abs() / before.abs()).max() <= 1e-10
    assert (system.entropy(after_state.s) > system.entropy(state.s)).all()


def test_rotation_step_preserves_momentum_norm(lattice):
    system, state = random_system(lattice, branch="full")
    rotated = rotation_step(system, state, 0.7)
    assert torch.allclose(rotated.pi.pow(2).sum(1), state.pi.pow(2).sum(1), atol=1e-12)
    assert not torch.allclose(rotated.pi, state.pi)


def test_mobility_step_dissipates_into_entropy_exactly(lattice):
    system, state = random_system(lattice, branch="dissipative", quartic=0.0)
    after = mobility_step(system, state, 0.5, TIGHT)
    assert (system.hamiltonian(after.phi) < system.hamiltonian(state.phi)).all()
    assert (
        (system.energy(after) - system.energy(state)).abs() / system.energy(state).abs()
    ).max() <= 1e-10
    assert ((after.s - state.s) >= 0).all()


def test_full_branch_within_leapfrog_bound_and_entropy_nondecreasing():
    system, state = random_system(Grid2D(3, 4), batch=2, fields=2, branch="full", quartic=0.0)
    system = system.replace(gamma=0.05 * system.gamma, mobility=0.05 * system.mobility)
    _, diag = rollout(system, state, 0.05, 400, "strang", diagnostics=True, options=TIGHT)
    assert relative_error(diag) <= 1e-3
    assert (diag.entropy_production() >= 0).all()
    assert (diag.entropy[-1] > diag.entropy[0]).all()
    # the same system under euler: the ledger is not kept
    _, euler = rollout(system, state, 0.05, 400, "euler", diagnostics=True)
    assert relative_error(euler) > 10 * relative_error(diag)


def test_dissipative_strang_relaxes_to_the_cg_equilibrium():
    from lit_metriplector.core import solve

    system, state = random_system(Grid2D(4, 4), branch="dissipative", quartic=0.0)
    system = system.replace(mobility=1 + system.mobility)
    final, diag = rollout(system, state, 5.0, 60, "strang", diagnostics=True, options=TIGHT)
    phi_star, _ = solve(system, TIGHT)
    assert torch.allclose(final.phi, phi_star, atol=1e-6)
    assert relative_error(diag) <= 1e-10
    assert (diag.entropy_production() >= 0).all()


def test_time_dependent_sources_work_is_recorded():
    system, state = hamiltonian_system()
    g = torch.Generator().manual_seed(3)
    sources = [
        0.3 * torch.randn(state.phi.shape, dtype=torch.float64, generator=g) for _ in range(500)
    ]
    _, diag = rollout(system, state, 0.02, 500, "strang", sources=sources, diagnostics=True)
    drift_energy = (diag.energy - diag.energy[:1]).abs().max() / diag.energy.abs().max()
    assert relative_error(diag) <= 1e-3  # E - W_ext is conserved
    assert drift_energy > 10 * relative_error(diag)  # while E itself is not


def test_rollout_validates_arguments():
    system, state = hamiltonian_system()
    with pytest.raises(ValueError, match="integrator"):
        rollout(system, state, 0.1, 2, "rk4")
    with pytest.raises(ValueError, match="sources"):
        rollout(system, state, 0.1, 3, sources=[state.phi])


def test_rollout_under_bf16_autocast_keeps_float32_ledgers():
    system, state = hamiltonian_system()
    system, state = system.to(torch.bfloat16), State(*(t.to(torch.bfloat16) for t in state))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        final, diag = rollout(system, state, 0.05, 10, "strang", diagnostics=True)
    assert final.phi.dtype == torch.float32 and diag.energy.dtype == torch.float32


# --- the exact integrator of independent linear damped modes ---------------------------------


def damped_modes_system(lattice=None, seed: int = 0):
    """Independent underdamped modes on every site and field: no conductance, a diagonal
    coupling, ``mass2 >= 0.5 > gamma^2/4``; a state and 40 switching sources."""
    lattice = lattice or Grid2D(3, 4)
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, generator=g)
    sites = (2, 3, *lattice.site_shape)
    system = System(
        lattice,
        kappa=torch.zeros(2, 3, *lattice.edge_shape, dtype=torch.float64),
        mass2=0.5 + 2 * torch.rand(sites, **kw),
        source=torch.randn(sites, **kw),
        gamma=torch.rand(sites, **kw),
        coupling=torch.diag(torch.rand(3, **kw)),
        temperature=0.7,
    )
    phi, pi = torch.randn(2, *sites, **kw)
    state = State(phi, pi, torch.rand(2, *sites[2:], **kw))
    sources = torch.randn(40, *sites, **kw)
    return system, state, sources


def test_exact_keeps_the_ledger_with_switching_sources_and_steps():
    system, state, sources = damped_modes_system()
    dt = 0.05 + torch.rand(40, 1, *state.phi.shape[1:], dtype=torch.float64)  # per step and site
    _, diag = rollout(system, state, dt, 40, "exact", sources=sources, diagnostics=True)
    assert diag.energy.shape == (41, 2) and diag.energy.dtype == torch.float64
    assert relative_error(diag) <= 1e-10  # E - W_ext is conserved to rounding
    assert (diag.entropy_production() >= 0).all()
    assert (diag.energy - diag.energy[:1]).abs().max() > 1e-2  # while E itself is not


def test_strang_converges_to_exact_at_second_order():
    system, state, sources = damped_modes_system(Chain1D(5))
    errors = []
    for dt, hold in ((0.01, 50), (0.005, 100)):
        held = sources[:4].repeat_interleave(hold, 0)  # the same four sources over time 2
        exact, strang = (
            rollout(system, state, dt, 4 * hold, method, sources=held, diagnostics=True)
            for method in ("exact", "strang")
        )
        assert relative_error(exact[1]) < 1e-3 * relative_error(strang[1])
        ends = [(*final, diag.entropy) for final, diag in (exact, strang)]
        errors.append(max((x - y).abs().max() for x, y in zip(*ends, strict=True)))
    assert errors[1] < 1e-4 and 3.5 < errors[0] / errors[1] < 4.5


def test_exact_parallel_form_equals_step_by_step():
    system, state, sources = damped_modes_system()
    g = torch.Generator().manual_seed(1)
    dt = 0.1 + torch.rand(40, *state.phi.shape, dtype=torch.float64, generator=g)
    final, diag = rollout(system, state, dt, 40, "exact", sources=sources, diagnostics=True)
    work = torch.zeros(2, dtype=torch.float64)
    for k in range(40):
        work = work - ((sources[k] - system.source) * state.phi).flatten(1).sum(1)
        system = system.replace(source=sources[k])
        state = exact_step(system, state, dt[k])
    for x, y in zip(final, state, strict=True):
        assert torch.allclose(x, y, atol=1e-12)
    assert torch.allclose(diag.energy[-1], system.energy(state), atol=1e-12)
    assert torch.allclose(diag.work[-1], work, atol=1e-12)


def test_exact_rejects_what_it_cannot_integrate():
    system, state = random_system(Grid2D(3, 3), branch="full")
    with pytest.raises(ValueError, match="quartic term, a channel rotation, mobility, conduct"):
        rollout(system, state, 0.1, 2, "exact")
    system, state, _ = damped_modes_system()
    with pytest.raises(ValueError, match="overdamped"):
        rollout(system.replace(gamma=10 + system.gamma), state, 0.1, 2, "exact")
    with pytest.raises(ValueError, match="no momenta"):
        exact_step(system, state._replace(pi=None), 0.1)


# --- modes whose frequency and friction change every step ------------------------------------


def modulations(state, steps: int = 40, seed: int = 2):
    """Per-step frequencies, frictions and step sizes for every site and field."""
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=torch.float64, generator=g)
    shape = (steps, *state.phi.shape)
    return 0.2 + 2 * torch.rand(shape, **kw), torch.rand(shape, **kw), 0.1 + torch.rand(shape, **kw)


def test_modulated_rollout_equals_step_by_step_and_keeps_the_ledger():
    system, state, sources = damped_modes_system()
    frequencies, frictions, dt = modulations(state)
    final, (phi, pi), diag = modulated_rollout(
        system, state, dt, sources, frequencies, frictions, diagnostics=True
    )
    reference, work, before = state, torch.zeros(2, dtype=torch.float64), system
    for k in range(40):
        now = system.replace(
            mass2=stiffness(frequencies[k], frictions[k]),
            gamma=frictions[k],
            source=sources[k],
            coupling=None,
        )
        work = work + now.hamiltonian(reference.phi, reference.pi)
        work = work - before.hamiltonian(reference.phi, reference.pi)
        reference, before = exact_step(now, reference, dt[k]), now
        assert torch.allclose(phi[:, k], reference.phi, atol=1e-10)
        assert torch.allclose(pi[:, k], reference.pi, atol=1e-10)
    for x, y in zip(final, reference, strict=True):
        assert torch.allclose(x, y, atol=1e-10)
    assert torch.allclose(diag.work[-1], work, atol=1e-10)
    assert torch.allclose(diag.energy[-1], before.energy(reference), atol=1e-10)
    # energy in = the drive's work, energy out = friction heat in T0 S: E - W is conserved
    assert relative_error(diag) <= 1e-10
    assert (diag.entropy_production() > 0).all()
    assert (diag.energy - diag.energy[:1]).abs().max() > 1e-2  # while E itself is not


def test_modulated_rollout_without_modulation_is_the_exact_rollout():
    system, state, sources = damped_modes_system()
    dt = 0.1 + torch.rand(40, *state.phi.shape, dtype=torch.float64)
    expected, diag = rollout(system, state, dt, 40, "exact", sources=sources, diagnostics=True)
    final, _, same = modulated_rollout(system, state, dt, sources, diagnostics=True)
    for x, y in zip(
        (*final, same.energy, same.work), (*expected, diag.energy, diag.work), strict=True
    ):
        assert torch.allclose(x, y, atol=1e-12)


def test_modulated_rollout_is_causal_and_rejects_bad_rates():
    system, state, sources = damped_modes_system()
    frequencies, frictions, dt = modulations(state)
    _, (phi, _), _ = modulated_rollout(system, state, dt, sources, frequencies, frictions)
    changed = [x.clone() for x in (sources, frequencies, frictions)]
    for x in changed:
        x[25:] *= 1.5
    _, (other, _), _ = modulated_rollout(system, state, dt, changed[0], *changed[1:])
    assert torch.equal(phi[:, :25], other[:, :25]) and not torch.equal(phi[:, 25], other[:, 25])
    with pytest.raises(ValueError, match="frequencies > 0"):
        modulated_rollout(system, state, dt, sources, -frequencies, frictions)
    with pytest.raises(ValueError, match="39 frictions given for 40 steps"):
        modulated_rollout(system, state, dt, sources, frequencies, frictions[:39])


@pytest.mark.parametrize("chunk", [1, 4, 16])
def test_matrix_recurrence_and_its_adjoint(chunk):
    g = torch.Generator().manual_seed(0)
    m = tuple(
        (0.7 * torch.rand(2, 9, 3, dtype=torch.float64, generator=g)).requires_grad_()
        for _ in range(4)
    )
    c = tuple(
        torch.randn(2, 9, 3, dtype=torch.float64, generator=g).requires_grad_() for _ in range(2)
    )

    def recurrence(*tensors):
        return matrix_recurrence(tensors[:4], tensors[4:], chunk)

    x, expected = (torch.zeros(2, 3, dtype=torch.float64),) * 2, []
    for t in range(9):
        x = (
            m[0][:, t] * x[0] + m[1][:, t] * x[1] + c[0][:, t],
            m[2][:, t] * x[0] + m[3][:, t] * x[1] + c[1][:, t],
        )
        expected.append(torch.stack(x))
    assert torch.allclose(torch.stack(recurrence(*m, *c)), torch.stack(expected, 2), atol=1e-12)
    assert torch.autograd.gradcheck(recurrence, (*m, *c))
