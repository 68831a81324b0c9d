"""Perfect mazes: generation, shortest paths, encoding. Plain numpy, no Lightning.

Grid layout. A maze of ``c`` cells per side is a bool grid of ``G = 2c + 1`` sites per side,
True = open. Cell ``(i, j)`` sits at the odd site ``(2i + 1, 2j + 1)``; the site between two
adjacent cells is a wall that is opened when the spanning tree joins them; sites at even-even
positions and the border stay walls. Coordinates are always ``(row, col)`` grid sites.

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


def generate_maze(cells: int, rng: np.random.Generator, algorithm: Algorithm = "dfs") -> np.ndarray:
    """A perfect maze of cells x cells as a (2 cells + 1)^2 bool grid, True = open."""
    if cells < 1:
        raise ValueError(f"cells must be >= 1, got {cells}")
    if algorithm not in _CARVERS:
        raise ValueError(f"unknown algorithm {algorithm!r}, expected one of {list(_CARVERS)}")
    return _carve(cells, *_CARVERS[algorithm](cells, rng))


def random_endpoints(cells: int, rng: np.random.Generator) -> tuple[Site, Site]:
    """Two distinct random cells as grid sites (start, goal)."""
    if cells < 2:
        raise ValueError(f"need cells >= 2 for two distinct endpoints, got {cells}")
    a, b = rng.choice(cells * cells, size=2, replace=False).tolist()
    return (2 * (a // cells) + 1, 2 * (a % cells) + 1), (2 * (b // cells) + 1, 2 * (b % cells) + 1)


def shortest_path(open: np.ndarray, start: Site, goal: Site) -> np.ndarray | None:
    """Breadth-first search over 4-neighbour open sites: bool mask of one shortest path, or None."""
    h, w = open.shape
    # A wall border means neighbours never leave the grid, so the loop needs no bounds checks.
    grid = np.pad(np.asarray(open, dtype=bool), 1).ravel().tolist()
    stride = w + 2
    s = (start[0] + 1) * stride + start[1] + 1
    g = (goal[0] + 1) * stride + goal[1] + 1
    if not (grid[s] and grid[g]):
        return None
    parent = [-1] * len(grid)
    parent[s] = s
    queue = deque([s])
    while queue and parent[g] < 0:
        k = queue.popleft()
        for n in (k - stride, k + stride, k - 1, k + 1):
            if grid[n] and parent[n] < 0:
                parent[n] = k
                queue.append(n)
    if parent[g] < 0:
        return None
    on_path = [g]
    while on_path[-1] != s:
        on_path.append(parent[on_path[-1]])
    mask = np.zeros(len(grid), dtype=bool)
    mask[on_path] = True
    return mask.reshape(h + 2, w + 2)[1:-1, 1:-1].copy()


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
) -> tuple[np.ndarray, np.ndarray]:
    """One training example: (input (3, G, G) float32 from encode, target (G, G) float32 path)."""
    rng = np.random.default_rng(seed)  # a Generator is used as-is
    open = generate_maze(cells, rng, algorithm)
    start, goal = random_endpoints(cells, rng)
    return encode(open, start, goal), shortest_path(open, start, goal).astype(np.float32)


def as_mask(x: np.ndarray) -> np.ndarray:
    """A bool mask from bools, 0/1 values or probabilities (threshold 0.5)."""
    return np.asarray(x) > 0.5
