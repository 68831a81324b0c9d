"""``OptimalPath`` on hand-built mazes: a shortest path passes (any of tied ones, or their union),
a longer path, a broken one or a stray site fails; and the maze task logs it."""

import numpy as np
import torch

from lit_metriplector.datasets.mazes import encode, shortest_paths
from lit_metriplector.metrics import ExactMatch, OptimalPath

# A ring of 8 sites around a pillar: from (1, 1) to (3, 3) two routes of 4 steps tie. A detour
# down the left column, along row 5 and back up is longer.
OPEN = np.zeros((7, 5), dtype=bool)
OPEN[1:4, 1:4] = True
OPEN[2, 2] = False  # the pillar
OPEN[3:6, 1] = True  # a dead-end bay below the start column
OPEN[5, 1:4] = True
OPEN[4, 3] = True  # ...joined back: (3,1)-(4,1)-(5,1)-(5,2)-(5,3)-(4,3)-(3,3) is longer
START, GOAL = (1, 1), (3, 3)
UPPER = [(1, 1), (1, 2), (1, 3), (2, 3), (3, 3)]
LOWER = [(1, 1), (2, 1), (3, 1), (3, 2), (3, 3)]
LONGER = [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (5, 2), (5, 3), (4, 3), (3, 3)]


def score(sites: list[tuple[int, int]], metric_class=OptimalPath) -> float:
    logits = -torch.ones(1, *OPEN.shape)
    for site in sites:
        logits[0][site] = 1.0
    target = torch.from_numpy(shortest_paths(OPEN, START, GOAL)).float()[None]
    maze = torch.from_numpy(encode(OPEN, START, GOAL))[None]
    metric = metric_class()
    if metric_class is OptimalPath:
        metric.update(logits, target, maze)
    else:
        metric.update(logits, target)
    return float(metric.compute())


def test_the_maze_has_a_tie():
    assert shortest_paths(OPEN, START, GOAL).sum() == 8  # both routes of the ring


def test_either_tied_route_or_both_is_optimal():
    assert score(UPPER) == score(LOWER) == score(UPPER + LOWER) == 1.0
    assert score(UPPER) == 1.0 and score(UPPER, ExactMatch) == 0.0  # exact wants every tie
    assert score(UPPER + LOWER, ExactMatch) == 1.0


def test_a_longer_path_a_broken_path_or_a_stray_site_is_not_optimal():
    assert score(LONGER) == 0.0
    assert score(UPPER[:2] + UPPER[3:]) == 0.0  # a gap
    assert score(UPPER[1:]) == 0.0  # the start missing
    assert score([*UPPER, (5, 2)]) == 0.0  # a site on no shortest path
    assert score([]) == 0.0


def test_the_score_is_the_fraction_of_optimal_mazes():
    metric = OptimalPath()
    target = torch.from_numpy(shortest_paths(OPEN, START, GOAL)).float()[None].repeat(2, 1, 1)
    maze = torch.from_numpy(encode(OPEN, START, GOAL))[None].repeat(2, 1, 1, 1)
    logits = torch.where(target > 0, 1.0, -1.0)
    logits[1] = -1.0
    metric.update(logits, target, maze)
    assert float(metric.compute()) == 0.5
