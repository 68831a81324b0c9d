"""Maze files: reading with validation, writing. Also described in docs/data.md, "Maze files".

``read_mazes`` picks the format by suffix.

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
and test targets are always recomputed with ``shortest_paths``.
"""

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..files import atomic_write, require_file
from .generation import Maze, as_mask, shortest_paths


class MazeFormatError(DataError):
    """A maze file is malformed; the message names the file, the maze and the problem."""


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
    if shortest_paths(open, *ends) is None:
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
    with open(file, "rb") as f:
        magic = f.read(6)
    if magic == b"\x93NUMPY":
        raise MazeFormatError(f"{file}: holds a single .npy array, not an .npz archive of arrays")
    if not magic.startswith(b"PK"):  # else numpy would fall back to pickle and talk about that
        raise MazeFormatError(f"{file}: not a readable .npz archive (not a zip of .npy arrays)")
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise MazeFormatError(f"{file}: not a readable .npz archive ({e})") from e
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
    file = require_file(path, "maze file")
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
    return [as_mask(p) for p in predictions]


def format_mazes_text(
    mazes: Sequence[Maze], predictions: Sequence[np.ndarray] | None = None
) -> str:
    """Mazes as text, marking with `*` the predictions (bool or probabilities) if given, else
    each maze's own path; marks on walls cannot be written in text and are dropped."""
    blocks = []
    for maze, marks in zip(mazes, _marks(mazes, predictions), strict=True):
        chars = np.where(maze.open, ".", "#")
        if marks is not None:
            chars[marks & maze.open] = "*"
        chars[maze.start] = "S"
        chars[maze.goal] = "G"
        blocks.append("\n".join("".join(row) for row in chars))
    return "\n\n".join(blocks) + "\n"


def write_mazes_text(
    path: str | Path, mazes: Sequence[Maze], predictions: Sequence[np.ndarray] | None = None
) -> None:
    """Write ``format_mazes_text(mazes, predictions)`` to ``path``."""
    with atomic_write(path, "w") as f:
        f.write(format_mazes_text(mazes, predictions))


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
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)
