"""Fronts of the heat flow (``core.fronts``): arrival times are graph distances, the support of
the core's own Euler rollout, and two fronts mark exactly the shortest paths; the maze network
built on them is exact on mazes with loops."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lit_metriplector.core import (
    Chain1D,
    DenseGraph,
    State,
    System,
    arrival_times,
    front_step,
    on_shortest_paths,
    rollout,
)
from lit_metriplector.datasets.mazes import (
    Channel,
    distances,
    encode,
    make_example,
    shortest_paths,
)
from lit_metriplector.networks.maze import channel, ideal_system, shortest_path_sites


def loopy_batch(cells: int, loops: float, count: int, seed: int = 0):
    examples = [
        make_example(cells, np.random.SeedSequence([seed, i]), loops=loops) for i in range(count)
    ]
    x = torch.from_numpy(np.stack([e[0] for e in examples]))
    return x, torch.from_numpy(np.stack([e[1] for e in examples])) > 0.5


def endpoints(x):
    return torch.cat([channel(x, Channel.START), channel(x, Channel.GOAL)], 1)


@pytest.mark.parametrize("loops", [0.0, 0.1, 0.3])
def test_arrival_times_are_the_graph_distances(loops):
    x, _ = loopy_batch(6, loops, 4)
    system = ideal_system(x)
    arrival, _ = arrival_times(system.lattice, system.kappa, endpoints(x))
    for b in range(len(x)):
        for k, c in enumerate((Channel.START, Channel.GOAL)):
            source = tuple(int(v) for v in torch.nonzero(x[b, c])[0])
            d = distances(x[b, Channel.OPEN].numpy() > 0.5, source)
            expected = np.where(d >= 0, d, np.inf)
            np.testing.assert_array_equal(arrival[b, k].numpy(), expected)


def test_the_front_is_the_support_of_the_euler_heat_flow():
    """The core's float64 explicit Euler rollout of dphi/dt = -Gamma A phi (a nonnegative
    stencil: dt Gamma diag A <= 1) reaches a site exactly at its arrival time."""
    x, _ = loopy_batch(4, 0.3, 3)
    system = ideal_system(x).to(torch.float64)
    sources = channel(x, Channel.START).double()
    heat = System(system.lattice, system.kappa, mobility=torch.ones_like(sources))
    arrival, _ = arrival_times(system.lattice, system.kappa, sources)
    state = State(sources, None, torch.zeros(len(x), *x.shape[-2:], dtype=torch.float64))
    for step in range(12):
        support = state.phi[:, 0] > 0
        assert torch.equal(support, arrival[:, 0] <= step), step
        state, _ = rollout(heat, state, dt=0.2, steps=1, method="euler")  # 0.2 * 4 <= 1


def test_the_boolean_grid_step_matches_the_reference():
    x, _ = loopy_batch(5, 0.2, 2)
    system = ideal_system(x)
    reached = endpoints(x) > 0
    for _ in range(6):
        reached = front_step(system.lattice, system.kappa, reached)
    arrival, _ = arrival_times(system.lattice, system.kappa, endpoints(x), max_steps=6)
    assert torch.equal(reached, arrival <= 6)


def test_a_chain_and_a_complete_graph():
    source = torch.zeros(1, 1, 700)  # longer than 255 steps: the step counts are flushed
    source[..., 0] = 1
    arrival, steps = arrival_times(Chain1D(700), torch.ones(1, 1, 1, 700), source)
    assert torch.equal(arrival.flatten(), torch.arange(700.0)) and steps == 699
    arrival, steps = arrival_times(DenseGraph(5), torch.ones(1, 1, 5, 5), source[..., :5])
    assert torch.equal(arrival.flatten(), torch.tensor([0.0, 1, 1, 1, 1])) and steps == 1


def test_fronts_stop_at_their_targets_and_unreachable_sites_stay_infinite():
    x, _ = loopy_batch(6, 0.1, 2)
    system = ideal_system(x)
    ends = endpoints(x)
    arrival, steps = arrival_times(system.lattice, system.kappa, ends, targets=ends.flip(1))
    length = int((arrival[:, 0] * channel(x, Channel.GOAL)[:, 0]).nan_to_num().amax())
    assert steps == length  # the longer of the two mazes' shortest paths
    assert torch.isinf(arrival[channel(x, Channel.OPEN).expand_as(arrival) == 0]).all()


@pytest.mark.parametrize(("cells", "loops"), [(5, 0.0), (6, 0.1), (9, 0.3), (12, 0.5)])
def test_two_fronts_mark_exactly_every_shortest_path(cells, loops):
    x, target = loopy_batch(cells, loops, 8, seed=cells)
    assert torch.equal(shortest_path_sites(x), target)
    system = ideal_system(x)
    arrival, _ = arrival_times(system.lattice, system.kappa, endpoints(x))
    assert torch.equal(on_shortest_paths(arrival), target)


def test_no_path_marks_nothing():
    x, _ = loopy_batch(4, 0.0, 1)
    x[0, Channel.OPEN] = 0
    x[0, Channel.OPEN][x[0, Channel.START] > 0] = 1
    x[0, Channel.OPEN][x[0, Channel.GOAL] > 0] = 1
    assert not shortest_path_sites(x).any()


def test_a_tie_marks_both_routes():
    # a ring of 8 sites around a wall: start and goal opposite, two routes of length 4
    open_ = np.zeros((5, 5), dtype=bool)
    open_[1:4, 1:4] = True
    open_[2, 2] = False
    marks = shortest_paths(open_, (1, 1), (3, 3))
    assert marks.sum() == 8
    x = torch.from_numpy(encode(open_, (1, 1), (3, 3)))[None]
    assert torch.equal(shortest_path_sites(x)[0], torch.from_numpy(marks))


@pytest.mark.slow
def test_maze_loops_config_trained_on_15x15_is_exact_on_unseen_39x39(tmp_path, monkeypatch):
    """Generalisation through the shipped config: 100 steps on 15x15 mazes with loops, then
    unseen 39x39 mazes at another loop density."""
    from lit_metriplector.cli import main

    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parents[1] / "configs" / "maze_loops.yaml"
    cli = main(
        ["fit", "--config", str(config), "--trainer.max_steps=100"]
        + ["--data.init_args.test_cells=[19]", "--data.init_args.test_size=64"]
        + ["--trainer.enable_progress_bar=false", "--trainer.logger=false"]
        + ["--test_after_fit=false"]
    )
    cli = main(
        ["test", "--config", str(config), "--ckpt_path", "last"]
        + ["--data.init_args.test_cells=[19]", "--data.init_args.test_size=64"]
        + ["--data.init_args.loops=0.1", "--trainer.enable_progress_bar=false"]
        + ["--trainer.logger=false"]
    )
    metrics = cli.trainer.callback_metrics
    assert float(metrics["test/39x39/exact"]) >= 0.95
    assert float(metrics["test/39x39/optimal"]) >= float(metrics["test/39x39/exact"])
