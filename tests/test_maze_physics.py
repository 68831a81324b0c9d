"""Physics sanity: in a perfect maze with a unit source at the start and a unit sink at the goal,
all current flows along the unique path and dead ends carry none."""

import numpy as np
import pytest
import torch

from lit_metriplector.core import CGOptions, Grid2D, System, solve
from lit_metriplector.datamodules.mazes import generate_maze, random_endpoints, shortest_path


@pytest.mark.parametrize("cells", [7, 19])
@pytest.mark.parametrize("algorithm", ["dfs", "kruskal", "wilson"])
def test_current_flows_exactly_on_the_bfs_path(cells, algorithm):
    rng = np.random.default_rng(cells)
    for _ in range(3):
        open_ = generate_maze(cells, rng, algorithm)
        start, goal = random_endpoints(cells, rng)
        path = shortest_path(open_, start, goal)
        size = open_.shape[0]
        lattice = Grid2D(size, size)
        o = torch.from_numpy(open_).double()[None, None]
        tail, head = lattice.endpoints(o)
        source = torch.zeros_like(o)
        source[0, 0, start[0], start[1]] = 1.0
        source[0, 0, goal[0], goal[1]] = -1.0
        system = System(lattice, kappa=tail * head, source=source)  # kappa = 1 between open sites
        phi, info = solve(system, CGOptions(tol=1e-10, dtype=torch.float64))
        assert info.converged.all()
        current = (system.kappa * lattice.grad(phi)).abs()[0, 0]  # (2, G, G)
        strong = (current > 0.5).double()
        touched = strong.sum(0) > 0  # tail sites of strong edges
        touched[1:, :] |= strong[0, :-1, :] > 0  # heads of vertical edges
        touched[:, 1:] |= strong[1, :, :-1] > 0  # heads of horizontal edges
        np.testing.assert_array_equal(touched.numpy(), path)
