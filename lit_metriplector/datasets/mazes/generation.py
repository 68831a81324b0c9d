"""Mazes: generation (perfect, or with loops), shortest paths, encoding. Plain numpy, no Lightning.

Grid layout. A maze of ``c`` cells per side is a bool grid of ``G = 2c + 1`` sites per side,
True = open. Cell ``(i, j)`` sits at the odd site ``(2i + 1, 2j + 1)``; the site between two
adjacent cells is a wall that is opened when the spanning tree joins them; sites at even-even
positions and the border stay walls. Coordinates are always ``(row, col)`` grid sites.

Loops. ``loops`` is the fraction of the interior walls left between adjacent cells after carving
that are knocked out at random (0: a perfect maze, a tree, with one path between any two cells).
A maze with loops may have several shortest paths between start and goal; the target marks them
all: the sites ``x`` with ``d(start, x) + d(x, goal) = d(start, goal)`` (``shortest_paths``).

The encoded input ``(3, H, W)`` has the channels of ``Channel``; networks index it by name.
"""

import functools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, get_args

import numpy as np

Algorithm = Literal["dfs", "kruskal", "wilson"]
Site = tuple[int, int]


class Channel(IntEnum):
    """Channels of an encoded maze: open sites, the start (one-hot), the goal (one-hot)."""

    OPEN = 0
    START = 1
    GOAL = 2


@dataclass(frozen=True, eq=False)
class Maze:
    open: np.ndarray  # (H, W) bool, True = open site
    start: Site
    goal: Site
    path: np.ndarray | None = None  # (H, W) bool marks read from a file, if it had any


# generation: each algorithm returns the spanning tree's edges as two lists of flat cell indices
# (cell (i, j) is i * cells + j) and _carve turns them into the grid.


@functools.lru_cache(maxsize=16)
def _neighbours(cells: int) -> tuple[tuple[int, ...], ...]:
    """Flat indices of the cells adjacent to each cell, as tuples for the Python loops below."""
    out = []
    for k in range(cells * cells):
        i, j = divmod(k, cells)
        candidates = (
            (k - cells, i > 0),
            (k + cells, i < cells - 1),
            (k - 1, j > 0),
            (k + 1, j < cells - 1),
        )
        out.append(tuple(n for n, inside in candidates if inside))
    return tuple(out)


def _carve(cells: int, a: Sequence[int], b: Sequence[int]) -> np.ndarray:
    """The grid with every cell open and the wall between each joined pair (a[k], b[k]) opened."""
    a, b = np.asarray(a, dtype=np.intp), np.asarray(b, dtype=np.intp)
    open = np.zeros((2 * cells + 1, 2 * cells + 1), dtype=bool)
    open[1::2, 1::2] = True
    # the wall between cells (i1, j1) and (i2, j2) is the site halfway between their sites
    open[a // cells + b // cells + 1, a % cells + b % cells + 1] = True
    return open


def _dfs(cells: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Recursive backtracker with an explicit stack: long corridors, few branches."""
    neighbours = _neighbours(cells)
    draws = rng.random(cells * cells).tolist()  # one per tree edge; bulk draws are much faster
    visited = [False] * (cells * cells)
    first = int(rng.integers(cells * cells))
    visited[first] = True
    stack, a, b = [first], [], []
    while stack:
        k = stack[-1]
        fresh = [n for n in neighbours[k] if not visited[n]]
        if not fresh:
            stack.pop()
            continue
        n = fresh[int(draws[len(a)] * len(fresh))]
        visited[n] = True
        a.append(k)
        b.append(n)
        stack.append(n)
    return a, b


def _kruskal(cells: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Randomized Kruskal: join the two sides of every wall, in random order, unless connected."""
    k = np.arange(cells * cells).reshape(cells, cells)
    u = np.concatenate([k[:, :-1].ravel(), k[:-1, :].ravel()])  # horizontal, then vertical pairs
    v = np.concatenate([k[:, 1:].ravel(), k[1:, :].ravel()])
    order = rng.permutation(len(u))
    parent = list(range(cells * cells))  # union-find forest

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees flat
            x = parent[x]
        return x

    a, b = [], []
    for x, y in zip(u[order].tolist(), v[order].tolist(), strict=True):
        rx, ry = root(x), root(y)
        if rx != ry:
            parent[rx] = ry
            a.append(x)
            b.append(y)
    return a, b


def _wilson(cells: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Wilson's algorithm: loop-erased random walks give a uniformly random spanning tree."""
    n = cells * cells
    neighbours = _neighbours(cells)
    in_tree = [False] * n
    in_tree[int(rng.integers(n))] = True
    exit_to = [0] * n
    draws, t = [], 0
    a, b = [], []
    for walk_start in range(n):
        # Walk until the tree is hit. Keeping only the last exit from each cell erases the loops.
        k = walk_start
        while not in_tree[k]:
            if t == len(draws):
                draws, t = rng.random(4 * n).tolist(), 0
            options = neighbours[k]
            exit_to[k] = options[int(draws[t] * len(options))]
            t += 1
            k = exit_to[k]
        # Add the loop-erased walk to the tree.
        k = walk_start
        while not in_tree[k]:
            in_tree[k] = True
            a.append(k)
            b.append(exit_to[k])
            k = exit_to[k]
    return a, b


_CARVERS = {"dfs": _dfs, "kruskal": _kruskal, "wilson": _wilson}
assert set(_CARVERS) == set(get_args(Algorithm))


def generate_maze(
    cells: int, rng: np.random.Generator, algorithm: Algorithm = "dfs", loops: float = 0.0
) -> np.ndarray:
    """A maze of cells x cells as a (2 cells + 1)^2 bool grid, True = open: perfect, then a
    fraction ``loops`` of its remaining interior walls knocked out (no draws when 0, so perfect
    mazes stay what they were)."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    if algorithm not in _CARVERS:
        raise ValueError(f"unknown algorithm {algorithm!r}, expected one of {list(_CARVERS)}")
    if not 0.0 <= loops <= 1.0:
        raise ValueError(f"loops must be a fraction in [0, 1], got {loops}")
    open = _carve(cells, *_CARVERS[algorithm](cells, rng))
    if loops > 0:
        # walls between two cells: odd row and even column inside the border, or the converse
        rows, cols = np.nonzero(~open)
        between = ((rows % 2) != (cols % 2)) & (rows > 0) & (cols > 0)
        between &= (rows < open.shape[0] - 1) & (cols < open.shape[1] - 1)
        walls = np.flatnonzero(between)
        knocked = rng.choice(walls, size=round(loops * len(walls)), replace=False)
        open[rows[knocked], cols[knocked]] = True
    return open


def random_endpoints(cells: int, rng: np.random.Generator) -> tuple[Site, Site]:
    """Two distinct random cells as grid sites (start, goal)."""
    if cells < 2:
        raise ValueError(f"need cells >= 2 for two distinct endpoints, got {cells}")
    a, b = rng.choice(cells * cells, size=2, replace=False).tolist()
    return (2 * (a // cells) + 1, 2 * (a % cells) + 1), (2 * (b // cells) + 1, 2 * (b % cells) + 1)


def distances(open: np.ndarray, source: Site) -> np.ndarray:
    """Breadth-first search over 4-neighbour open sites: the number of steps from ``source`` to
    every site, int64 ``(H, W)``, -1 where it cannot be reached (walls included)."""
    h, w = open.shape
    # A wall border means neighbours never leave the grid, so the loop needs no bounds checks.
    grid = np.pad(np.asarray(open, dtype=bool), 1).ravel().tolist()
    stride = w + 2
    s = (source[0] + 1) * stride + source[1] + 1
    distance = [-1] * len(grid)
    if grid[s]:
        distance[s] = 0
        queue = deque([s])
        while queue:
            k = queue.popleft()
            step = distance[k] + 1
            for n in (k - stride, k + stride, k - 1, k + 1):
                if grid[n] and distance[n] < 0:
                    distance[n] = step
                    queue.append(n)
    return np.array(distance, dtype=np.int64).reshape(h + 2, w + 2)[1:-1, 1:-1]


def shortest_paths(open: np.ndarray, start: Site, goal: Site) -> np.ndarray | None:
    """Bool mask of every site on some shortest start-goal path (the one path of a perfect
    maze): ``d(start, x) + d(x, goal) = d(start, goal)``, by two breadth-first searches; None if
    the goal cannot be reached."""
    from_start = distances(open, start)
    length = from_start[goal]
    if length < 0:
        return None
    from_goal = distances(open, goal)
    return (from_start >= 0) & (from_goal >= 0) & (from_start + from_goal == length)


def encode(open: np.ndarray, start: Site, goal: Site) -> np.ndarray:
    """float32 (3, H, W) with the channels of ``Channel``."""
    x = np.zeros((len(Channel), *open.shape), dtype=np.float32)
    x[Channel.OPEN] = open
    x[Channel.START, start[0], start[1]] = 1
    x[Channel.GOAL, goal[0], goal[1]] = 1
    return x


def decode(x: np.ndarray) -> Maze:
    """The inverse of encode (accepts a CPU tensor too), e.g. to write or draw a batch's inputs."""
    x = np.asarray(x)
    start, goal = (
        np.unravel_index(int(np.argmax(x[c])), x[c].shape) for c in (Channel.START, Channel.GOAL)
    )
    return Maze(x[Channel.OPEN] > 0.5, (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1])))


def make_example(
    cells: int,
    seed: np.random.SeedSequence | np.random.Generator | int,
    algorithm: Algorithm = "dfs",
    loops: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One training example: (input (3, G, G) float32 from encode, target (G, G) float32: the
    sites of every shortest path)."""
    rng = np.random.default_rng(seed)  # a Generator is used as-is
    open = generate_maze(cells, rng, algorithm, loops)
    start, goal = random_endpoints(cells, rng)
    return encode(open, start, goal), shortest_paths(open, start, goal).astype(np.float32)


def as_mask(x: np.ndarray) -> np.ndarray:
    """A bool mask from bools, 0/1 values or probabilities (threshold 0.5)."""
    return np.asarray(x) > 0.5
