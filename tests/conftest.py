import os

# Before torch loads OpenMP (see lit_metriplector/__main__.py): spinning threads make the suite
# several times slower whenever the cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

from lit_metriplector.core import Chain1D, DenseGraph, Grid2D, State, System  # noqa: E402

LATTICES = [Grid2D(4, 5), Chain1D(6), DenseGraph(5)]


def random_system(
    lattice,
    batch: int = 3,
    fields: int = 3,
    branch: str = "full",
    quartic: float = 0.3,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[System, State]:
    """A random configured system with every term of the Hamiltonian switched on, and a state."""
    g = generator or torch.Generator().manual_seed(0)
    kw = dict(dtype=torch.float64, generator=g)
    sites = (batch, fields, *lattice.site_shape)
    a = torch.randn(fields, fields, **kw)
    b = torch.randn(fields, fields, **kw)
    system = System(
        lattice,
        kappa=torch.rand(batch, fields, *lattice.edge_shape, **kw),
        mass2=torch.rand(sites, **kw),
        source=torch.randn(sites, **kw),
        gamma=torch.rand(sites, **kw) if branch == "full" else None,
        mobility=torch.rand(sites, **kw) if branch != "hamiltonian" else None,
        coupling=a.T @ a / fields,
        quartic=quartic,
        rotation=(b - b.T) if branch != "dissipative" else None,
        temperature=temperature,
    )
    pi = torch.randn(sites, **kw) if branch != "dissipative" else None
    state = State(torch.randn(sites, **kw), pi, torch.rand(batch, *lattice.site_shape, **kw))
    return system, state


@pytest.fixture(params=LATTICES, ids=lambda lattice: repr(lattice))
def lattice(request):
    return request.param
