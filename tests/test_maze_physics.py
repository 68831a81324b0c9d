"""Physics sanity: in a perfect maze with a unit source at the start and a unit sink at the goal,
all current flows along the unique path and dead ends carry none."""

import numpy as np
import pytest
import torch

from lit_metriplector.core import CGOptions, solve
from lit_metriplector.datasets.mazes import (
    encode,
    generate_maze,
    random_endpoints,
    shortest_paths,
)
from lit_metriplector.networks.maze import ideal_system


@pytest.mark.parametrize("cells", [7, 19])
@pytest.mark.parametrize("algorithm", ["dfs", "kruskal", "wilson"])
def test_current_flows_exactly_on_the_bfs_path(cells, algorithm):
    rng = np.random.default_rng(cells)
    for _ in range(3):
        open_ = generate_maze(cells, rng, algorithm)
        start, goal = random_endpoints(cells, rng)
        path = shortest_paths(open_, start, goal)
        system = ideal_system(torch.from_numpy(encode(open_, start, goal)).double()[None])
        lattice = system.lattice
        phi, info = solve(system, CGOptions(tol=1e-10, dtype=torch.float64))
        assert info.converged.all()
        current = (system.kappa * lattice.grad(phi)).abs()[0, 0]  # (2, G, G)
        strong = (current > 0.5).double()
        touched = strong.sum(0) > 0  # tail sites of strong edges
        touched[1:, :] |= strong[0, :-1, :] > 0  # heads of vertical edges
        touched[:, 1:] |= strong[1, :, :-1] > 0  # heads of horizontal edges
        np.testing.assert_array_equal(touched.numpy(), path)
