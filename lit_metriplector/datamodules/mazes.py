"""Perfect mazes: generation, shortest paths, encoding, files, pictures. Plain numpy, no Lightning.

Grid layout. A maze of ``c`` cells per side is a bool grid of ``G = 2c + 1`` sites per side,
True = open. Cell ``(i, j)`` sits at the odd site ``(2i + 1, 2j + 1)``; the site between two
adjacent cells is a wall that is opened when the spanning tree joins them; sites at even-even
positions and the border stay walls. Coordinates are always ``(row, col)`` grid sites.

Files (also described in docs/data.md, "Maze files"). ``read_mazes`` picks the format by suffix.

``.txt``: one or more mazes separated by blank lines, one line per grid row::

    #######
    #S****#      #  wall            S  start (an open site)
    ###.#*#      .  open site       G  goal (an open site)
    #...#G#      *  open site marked as on the path (``o`` is read as ``*`` too)
    #######

  Trailing whitespace is ignored. Each maze has exactly one ``S`` and one ``G`` with a path
  between them; all rows of a maze have the same length and all mazes of a file the same shape
  (they are batched together). The writer marks the solution or a prediction with ``*``; a mark
  on a wall cannot be written in text and is dropped (use ``.npz`` or a picture to see it).

``.npz``: arrays ``open``, ``start``, ``goal`` and optionally ``path``, all of one shape, either
  ``(G, G)`` for one maze or ``(N, G, G)`` for N mazes (rectangular grids are allowed), any numeric
  or bool dtype with values in {0, 1}; ``start`` and ``goal`` have exactly one 1 per maze, on an
  open site. ``path`` holds the marks as-is, walls included.

Marks read from a file (``Maze.path``) are what the file says, e.g. a model's prediction; training
and test targets are always recomputed with ``shortest_path``.
"""

import functools
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from PIL import Image

Algorithm = Literal["dfs", "kruskal", "wilson"]
Site = tuple[int, int]


class MazeFormatError(ValueError):
    """A maze file is malformed; the message names the file, the maze and the problem."""


@dataclass(frozen=True, eq=False)
class Maze:
    open: np.ndarray  # (H, W) bool, True = open site
    start: Site
    goal: Site
    path: np.ndarray | None = None  # (H, W) bool marks read from a file, if it had any


# -----------------------------------------------------------------------------
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
    """float32 (3, H, W): channel 0 open sites, 1 the start (one-hot), 2 the goal (one-hot)."""
    x = np.zeros((3, *open.shape), dtype=np.float32)
    x[0] = open
    x[1, start[0], start[1]] = 1
    x[2, goal[0], goal[1]] = 1
    return x


def decode(x: np.ndarray) -> Maze:
    """The inverse of encode (accepts a CPU tensor too), e.g. to write or draw a batch's inputs."""
    x = np.asarray(x)
    start, goal = (np.unravel_index(int(np.argmax(x[c])), x[c].shape) for c in (1, 2))
    return Maze(x[0] > 0.5, (int(start[0]), int(start[1])), (int(goal[0]), int(goal[1])))


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


# -----------------------------------------------------------------------------
# files


def _mask(x: np.ndarray) -> np.ndarray:
    """A bool mask from bools, 0/1 values or probabilities (threshold 0.5)."""
    return np.asarray(x) > 0.5


def _check(
    where: str, open: np.ndarray, start: np.ndarray, goal: np.ndarray, path: np.ndarray | None
) -> Maze:
    """Validate one maze given as masks and turn it into a Maze; `where` prefixes the errors."""
    ends = []
    for name, mask in (("start", start), ("goal", goal)):
        count = int(mask.sum())
        if count != 1:
            problem = f"has no {name}" if count == 0 else f"has {count} {name}s"
            raise MazeFormatError(f"{where}: {problem}, need exactly one")
        site = tuple(int(v) for v in np.argwhere(mask)[0])
        if not open[site]:
            raise MazeFormatError(f"{where}: the {name} {site} is on a wall")
        ends.append(site)
    if ends[0] == ends[1]:
        raise MazeFormatError(f"{where}: start and goal are the same site {ends[0]}")
    if shortest_path(open, *ends) is None:
        raise MazeFormatError(f"{where}: no path from the start {ends[0]} to the goal {ends[1]}")
    return Maze(open, ends[0], ends[1], path)


_TEXT_CHARS = "#.SG*o"


def _read_text(file: Path) -> list[Maze]:
    # blocks of (line number, row); blank lines separate mazes
    blocks: list[list[tuple[int, str]]] = [[]]
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise MazeFormatError(f"{file}: not a UTF-8 text file ({e})") from e
    for number, line in enumerate(lines, start=1):
        line = line.rstrip()
        if line:
            blocks[-1].append((number, line))
        elif blocks[-1]:
            blocks.append([])
    blocks = [block for block in blocks if block]
    if not blocks:
        raise MazeFormatError(f"{file}: contains no mazes (only blank lines)")
    mazes = []
    for i, block in enumerate(blocks):
        where = f"{file}: maze {i} (line {block[0][0]})"
        for number, row in block:
            if len(row) != len(block[0][1]):
                raise MazeFormatError(
                    f"{where}: line {number} has {len(row)} characters but line {block[0][0]} "
                    f"has {len(block[0][1])}; all rows of a maze must have the same length"
                )
        chars = np.array([list(row) for _, row in block])
        unknown = np.argwhere(~np.isin(chars, list(_TEXT_CHARS)))
        if len(unknown):
            r, c = unknown[0]
            raise MazeFormatError(
                f"{where}: unknown character {block[r][1][c]!r} at line {block[r][0]}, column "
                f"{c + 1}; expected one of {_TEXT_CHARS!r}"
            )
        if mazes and chars.shape != mazes[0].open.shape:
            raise MazeFormatError(
                f"{where}: shape {chars.shape} differs from maze 0's {mazes[0].open.shape}; "
                "all mazes of a file must have the same shape"
            )
        marked = np.isin(chars, list("*o"))
        path = marked | np.isin(chars, list("SG")) if marked.any() else None
        mazes.append(_check(where, chars != "#", chars == "S", chars == "G", path))
    return mazes


_NPZ_ARRAYS = ("open", "start", "goal", "path")


def _read_npz(file: Path) -> list[Maze]:
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MazeFormatError(f"{file}: not a readable .npz archive ({e})") from e
    if isinstance(data, np.ndarray):
        raise MazeFormatError(f"{file}: holds a single .npy array, not an .npz archive of arrays")
    with data:
        try:
            arrays = {name: data[name] for name in data.files}
        except ValueError as e:  # e.g. object arrays, which would need pickle
            raise MazeFormatError(f"{file}: unreadable array ({e})") from e
    missing = [name for name in _NPZ_ARRAYS[:3] if name not in arrays]
    unexpected = sorted(set(arrays) - set(_NPZ_ARRAYS))
    if missing or unexpected:
        raise MazeFormatError(
            f"{file}: missing arrays {missing}, unexpected arrays {unexpected}; "
            f"expected open, start, goal and optionally path"
        )
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise MazeFormatError(f"{file}: arrays disagree in shape: {shapes}")
    shape = shapes["open"]
    if len(shape) not in (2, 3):
        raise MazeFormatError(f"{file}: arrays have shape {shape}; need (G, G) or (N, G, G)")
    if min(shape) == 0:
        raise MazeFormatError(f"{file}: contains no mazes (arrays of shape {shape})")
    for name, a in arrays.items():
        binary = np.isin(a, (0, 1))
        if not binary.all():
            index = tuple(int(v) for v in np.argwhere(~binary)[0])
            raise MazeFormatError(
                f"{file}: array {name!r} has value {a[index].item()!r} at {index}; "
                "values must be 0 or 1"
            )
    batch = {name: (a if a.ndim == 3 else a[None]).astype(bool) for name, a in arrays.items()}
    return [
        _check(
            f"{file}: maze {i}",
            batch["open"][i],
            batch["start"][i],
            batch["goal"][i],
            batch["path"][i] if "path" in batch else None,
        )
        for i in range(len(batch["open"]))
    ]


def read_mazes(path: str | Path) -> list[Maze]:
    """Read and validate the mazes of a .txt or .npz file (format in the module docstring)."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"maze file not found: {file}")
    if file.stat().st_size == 0:
        raise MazeFormatError(f"{file}: the file is empty")
    if file.suffix == ".txt":
        return _read_text(file)
    if file.suffix == ".npz":
        return _read_npz(file)
    raise MazeFormatError(f"{file}: unknown suffix {file.suffix!r}; expected .txt or .npz")


def _marks(
    mazes: Sequence[Maze], predictions: Sequence[np.ndarray] | None
) -> list[np.ndarray | None]:
    """The path marks to write for each maze: the predictions if given, else the mazes' own."""
    if predictions is None:
        return [maze.path for maze in mazes]
    if len(predictions) != len(mazes):
        raise ValueError(f"got {len(predictions)} predictions for {len(mazes)} mazes")
    return [_mask(p) for p in predictions]


def write_mazes_text(
    path: str | Path, mazes: Sequence[Maze], predictions: Sequence[np.ndarray] | None = None
) -> None:
    """Write mazes as text, marking with `*` the predictions (bool or probabilities) if given,
    else each maze's own path; marks on walls cannot be written in text and are dropped."""
    blocks = []
    for maze, marks in zip(mazes, _marks(mazes, predictions), strict=True):
        chars = np.where(maze.open, ".", "#")
        if marks is not None:
            chars[marks & maze.open] = "*"
        chars[maze.start] = "S"
        chars[maze.goal] = "G"
        blocks.append("\n".join("".join(row) for row in chars))
    Path(path).write_text("\n\n".join(blocks) + "\n")


def write_mazes_npz(
    path: str | Path, mazes: Sequence[Maze], predictions: Sequence[np.ndarray] | None = None
) -> None:
    """Write mazes as an (N, G, G) .npz archive; `path` holds the predictions if given, else the
    mazes' own marks (written only if every maze has some)."""
    open = np.stack([maze.open for maze in mazes]).astype(np.uint8)
    arrays = {"open": open, "start": np.zeros_like(open), "goal": np.zeros_like(open)}
    for i, maze in enumerate(mazes):
        arrays["start"][(i, *maze.start)] = 1
        arrays["goal"][(i, *maze.goal)] = 1
    marks = _marks(mazes, predictions)
    if all(m is not None for m in marks):
        arrays["path"] = np.stack(marks).astype(np.uint8)
    np.savez_compressed(path, **arrays)


# -----------------------------------------------------------------------------
# pictures

WALL, OPEN = (40, 40, 40), (235, 235, 235)
PATH = (50, 100, 220)  # on the path (predicted and true when both are given)
EXTRA = (250, 150, 30)  # predicted, but not on the true path
MISSED = (170, 60, 200)  # on the true path, but not predicted
START, GOAL = (30, 180, 60), (220, 40, 40)


def to_rgb(
    open: np.ndarray,
    start: Site,
    goal: Site,
    prediction: np.ndarray | None = None,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 (3, H, W) picture, one pixel per site (TensorBoard's add_image layout).

    prediction and target are bool masks or probabilities (threshold 0.5); given both, their
    disagreement is coloured EXTRA / MISSED, given one it is drawn as PATH.
    """
    rgb = np.where(np.asarray(open, dtype=bool)[..., None], OPEN, WALL).astype(np.uint8)
    predicted = None if prediction is None else _mask(prediction)
    true = predicted if target is None else _mask(target)
    predicted = true if predicted is None else predicted  # one alone agrees with itself
    if true is not None:
        rgb[predicted & true] = PATH
        rgb[predicted & ~true] = EXTRA
        rgb[true & ~predicted] = MISSED
    rgb[start] = START
    rgb[goal] = GOAL
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def render_png(
    open: np.ndarray,
    start: Site,
    goal: Site,
    prediction: np.ndarray | None = None,
    target: np.ndarray | None = None,
    scale: int = 8,
) -> Image.Image:
    """to_rgb as a PIL image with each site drawn as a scale x scale square; .save() it as PNG."""
    rgb = to_rgb(open, start, goal, prediction, target).transpose(1, 2, 0)
    return Image.fromarray(rgb.repeat(scale, axis=0).repeat(scale, axis=1))
