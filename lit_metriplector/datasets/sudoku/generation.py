"""Seeded generation of Sudoku puzzles with a unique solution, and their disk cache.

Puzzle ``index`` of a set depends only on ``(seed, index)`` and the settings: its random stream
is ``np.random.SeedSequence(seed, spawn_key=(index,))``, so a set is the same whatever order,
slice or number of worker processes produced it, on every machine and rank (with one numpy
version: numpy keeps ``Generator`` streams stable in practice but does not promise it). Nor do
the puzzles depend on how the solver propagates or branches: the grid is the first valid one in
the order of the cells and of each cell's shuffled digits, and each removal is a yes or no.

A puzzle is a random full grid with givens removed in a random order, each only if the solution
stays unique. Most of the time goes to that test, so it is done in the cheapest way that decides:
a given that the other givens force (its units hold the eight other digits, or its digit has no
other place in one of its units) can always go; one that is the last given of a rectangle of the
grid (two digits crosswise in two rows, two columns and two boxes, which could swap) must stay;
otherwise a search looks for a solution with another digit in the cell, trying the grid's digit
first everywhere else. Below ``_LOCAL_BELOW`` givens most removals fail, and the other solution
usually differs from the grid only in the cell's band and stack: a search with the other cells
fixed to the grid finds it far sooner, and only when it finds none does the full search run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from ...errors import ConfigError, DataError
from ..files import atomic_write
from ..progress import Progress
from .solver import CELLS, EMPTY, PLACE, bit, digits, guesses, search
from .structure import BOX, COLUMN, ROW

log = logging.getLogger(__name__)

#: Bumped whenever a change to the algorithm changes the puzzles a seed gives (cache names).
GENERATOR_VERSION = 3

#: What a set's puzzles are: any with givens in the range; minimal (no given can be removed);
#: hard (minimal, and singles alone do not solve them).
Kind = Literal["any", "minimal", "hard"]
_KIND_WORDS = {"any": "", "minimal": ", minimal", "hard": ", minimal, needing a guess"}

# A minimal puzzle above the range means a fresh grid; past this many the range is unreachable.
_MAX_TRIES = 1000
# With fewer givens than this most removals fail: look for the other solution nearby first.
_LOCAL_BELOW = 30
# Sets smaller than this (in puzzles, a minimal or hard one counting _MINIMAL_COST) are
# generated in this process by default: starting a worker process costs about a second.
_PARALLEL_FROM = 3000
_MINIMAL_COST = 3
# Puzzles per task of a worker process, at most.
_CHUNK = 100

_ALL_DIGITS = 0x1FF
_UNITS_OF = tuple((int(ROW[i]), 9 + int(COLUMN[i]), 18 + int(BOX[i])) for i in range(81))
_UNIT_CELLS = tuple(
    tuple(sum(1 << j for j in range(81) if kind[j] == kind[i]) for kind in (ROW, COLUMN, BOX))
    for i in range(81)
)
_BAND_STACK = tuple(int(ROW[i] // 3 * 3 + COLUMN[i] // 3) for i in range(81))
# The cells outside the band and the stack of each box (the four boxes that share neither).
_OUTSIDE = tuple(
    tuple(j for j in range(81) if ROW[j] // 3 != b // 3 and COLUMN[j] // 3 != b % 3)
    for b in range(9)
)
_OUTSIDE_CELLS = tuple(sum(1 << j for j in cells) for cells in _OUTSIDE)
# Rectangles: two rows of a band and two columns of different stacks meet in four cells of two
# boxes, and so do two columns of a stack and two rows of different bands. _RECTANGLES holds the
# cells of each and their set, in the order of (rows or columns, which two, which two across).
_ROWS_IN_BAND = np.array(
    [(3 * b + i, 3 * b + j) for b in range(3) for i, j in ((0, 1), (0, 2), (1, 2))]
).T
_COLUMNS_APART = np.array([(i, j) for i in range(9) for j in range(i + 1, 9) if i // 3 != j // 3]).T
_RECTANGLES = tuple(
    (cells, sum(1 << cell for cell in cells))
    for cells in (
        tuple(9 * c + r if transposed else 9 * r + c for r in rows for c in columns)
        for transposed in (False, True)
        for rows in _ROWS_IN_BAND.T.tolist()
        for columns in _COLUMNS_APART.T.tolist()
    )
)
# Per digit: the digits in the order a search tries them, that digit first.
_FIRST = tuple((d, *(e for e in range(1, 10) if e != d)) for d in range(10))
_DIAGONAL_BOXES = tuple(tuple(j for j in range(81) if BOX[j] == b) for b in (0, 4, 8))


def _grid(rng: np.random.Generator) -> list[int]:
    """A random complete valid grid as a list: the three boxes on the diagonal (independent of
    each other) get random permutations, then the solver fills the rest cell by cell, trying the
    digits of each cell in a random order."""
    order = rng.permuted(np.tile(np.arange(1, 10), (81, 1)), axis=1).tolist()
    x, placed = EMPTY, 0
    for cells in _DIAGONAL_BOXES:
        for cell, digit in zip(cells, order[cells[0]], strict=True):
            x &= PLACE[bit(cell, digit)]
            placed |= 1 << cell
    found: list[int] = []
    search(x, placed, 1, found, order, first_blank=True)
    return digits(found[0])


def _rectangles(grid: list[int]) -> list[list[int]]:
    """Per cell, the rectangles of the grid through it (as sets of cells) that hold two digits
    crosswise: swapping them there gives another valid grid, so a puzzle keeps a given in each."""
    board = np.array(grid).reshape(9, 9)
    rows = np.stack([board, board.T])[:, _ROWS_IN_BAND]  # (grid or transposed, 2, 9 pairs, 9)
    a, b = rows[:, 0], rows[:, 1]
    left, right = _COLUMNS_APART
    crosswise = (a[..., left] == b[..., right]) & (a[..., right] == b[..., left])
    out: list[list[int]] = [[] for _ in range(81)]
    for index in np.flatnonzero(crosswise).tolist():
        cells, rectangle = _RECTANGLES[index]
        for cell in cells:
            out[cell].append(rectangle)
    return out


def random_grid(rng: np.random.Generator) -> np.ndarray:
    """A random complete valid grid, (81,) uint8 (see ``_grid``)."""
    return np.array(_grid(rng), dtype=np.uint8)


class _Givens:
    """The givens left of a full grid while removing them, and the test whether one can go.

    Args:
        grid: the solution, 81 digits.
    """

    def __init__(self, grid: list[int]) -> None:
        self.grid = grid
        self.count = 81
        self.given = CELLS
        self.cells_of: list[list[int]] = [[] for _ in range(10)]
        for cell, digit in enumerate(grid):
            self.cells_of[digit].append(cell)
        self.unit_digits = [_ALL_DIGITS] * 27
        # Per digit, the state with only that digit's givens placed (their AND is the puzzle's),
        # or None until needed again after a removal.
        self.digit_states: list[int | None] = [None] * 10
        self.order = [_FIRST[digit] for digit in grid]
        self._outside: dict[int, int] = {}
        self.rectangles = _rectangles(grid)

    def _placed(self, digit: int, without: int = -1) -> int:
        """The state with the givens of ``digit`` placed, except the one in cell ``without``."""
        x = EMPTY
        first = 81 * (digit - 1)  # bit(cell, digit) is first + cell
        for cell in self.cells_of[digit]:
            if cell != without:
                x &= PLACE[first + cell]
        return x

    def _fixed_outside(self, band_stack: int) -> int:
        """The state with the grid's digits placed outside a band and stack (cached)."""
        x = self._outside.get(band_stack)
        if x is None:
            x = EMPTY
            for cell in _OUTSIDE[band_stack]:
                x &= PLACE[bit(cell, self.grid[cell])]
            self._outside[band_stack] = x
        return x

    def removable(self, cell: int) -> bool:
        """Whether the solution stays unique without the given in ``cell``."""
        digit = self.grid[cell]
        row, column, box = _UNITS_OF[cell]
        units = self.unit_digits
        if units[row] | units[column] | units[box] | 1 << digit - 1 == _ALL_DIGITS:
            return True  # the cell's units hold the eight other digits
        given = self.given & ~(1 << cell)
        for rectangle in self.rectangles[cell]:
            if not rectangle & given:
                return False  # its digit and another can swap in a rectangle without givens
        x = self._placed(digit, without=cell)
        states = self.digit_states
        for other in range(1, 10):
            if other != digit:
                if states[other] is None:
                    states[other] = self._placed(other)
                x &= states[other]
        block = x >> 81 * (digit - 1)
        for unit in _UNIT_CELLS[cell]:
            if block & unit == 1 << cell:
                return True  # no other place for the digit in this unit
        x &= ~(1 << bit(cell, digit))
        found: list[int] = []
        if self.count < _LOCAL_BELOW:
            band_stack = _BAND_STACK[cell]
            near = x & self._fixed_outside(band_stack)
            search(near, given | _OUTSIDE_CELLS[band_stack], 1, found, self.order)
            if found:
                return False
        search(x, given, 1, found, self.order)
        return not found

    def remove(self, cell: int) -> None:
        """Drop the given in ``cell``."""
        digit = self.grid[cell]
        self.cells_of[digit].remove(cell)
        self.digit_states[digit] = None
        for unit in _UNITS_OF[cell]:
            self.unit_digits[unit] ^= 1 << digit - 1
        self.given &= ~(1 << cell)
        self.count -= 1

    def puzzle(self) -> list[int]:
        """The 81 digits of the puzzle, 0 = blank."""
        return [digit if self.given >> cell & 1 else 0 for cell, digit in enumerate(self.grid)]


def _check_kind(kind: str) -> None:
    if kind not in get_args(Kind):
        raise ConfigError(f"kind must be one of {get_args(Kind)}, got {kind!r}")


def generate_puzzle(
    rng: np.random.Generator, givens: tuple[int, int] = (17, 81), kind: Kind = "any"
) -> tuple[np.ndarray, np.ndarray]:
    """One puzzle with a unique solution and a number of givens in ``givens`` (inclusive).

    A target is drawn uniformly from the range; givens of a random full grid are then removed
    in random order, each only if the solution stays unique, until the target is reached or no
    given can go (a minimal puzzle). A minimal puzzle above the target is kept if it is in the
    range, else the attempt starts again from a fresh grid; minimal puzzles have ~21-27 givens,
    so low targets are reached more rarely than high ones, and fewer than ~21 almost never.

    Args:
        rng: the puzzle's own random stream.
        givens: inclusive range of the number of givens.
        kind: ``"any"``; ``"minimal"``: remove givens until none can go (ignoring the target),
            and retry until the minimal puzzle's count is in the range; ``"hard"``: a minimal
            puzzle that singles alone do not solve (the solver needs a guess,
            ``solver.guesses`` > 0), retried until there is one (about 6 minimal puzzles in 10
            qualify).

    Returns:
        (puzzle, solution), (81,) uint8 each, 0 = blank in the puzzle.
    """
    lo, hi = givens
    if not 17 <= lo <= hi <= 81:
        raise ConfigError(f"givens={givens}: need 17 <= low <= high <= 81")
    _check_kind(kind)
    for _ in range(_MAX_TRIES):
        grid = _grid(rng)
        target = 0 if kind != "any" else int(rng.integers(lo, hi + 1))
        state = _Givens(grid)
        for tested, cell in enumerate(rng.permutation(81).tolist()):
            if state.count == target or state.count - (81 - tested) > hi:
                break  # the target is reached, or the range can no longer be
            if state.removable(cell):
                state.remove(cell)
        if lo <= state.count <= hi and (kind != "hard" or guesses(state.puzzle()) > 0):
            return np.array(state.puzzle(), dtype=np.uint8), np.array(grid, dtype=np.uint8)
    raise ConfigError(f"givens={givens}, kind={kind}: no puzzle in range after {_MAX_TRIES} grids")


def _stream(seed: int, index: int) -> np.random.Generator:
    """The random stream of puzzle ``index`` of the set with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _generate_range(
    seed: int,
    start: int,
    stop: int,
    givens: tuple[int, int],
    kind: Kind,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles ``start .. stop - 1`` and their solutions, each puzzle from its own stream (also
    run in worker processes, without ``progress``)."""
    puzzles = np.zeros((stop - start, 81), np.uint8)
    solved = np.zeros((stop - start, 81), np.uint8)
    for k, index in enumerate(range(start, stop)):
        puzzles[k], solved[k] = generate_puzzle(_stream(seed, index), givens, kind)
        if progress is not None:
            progress.update(k + 1)
    return puzzles, solved


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _processes(workers: int | None, count: int, kind: Kind) -> int:
    """How many processes generate: ``workers`` (0 and 1 mean this one), or by default every
    usable CPU when the set is big enough to pay for starting them."""
    if workers is None:
        work = count * (1 if kind == "any" else _MINIMAL_COST)
        workers = _usable_cpus() if work >= _PARALLEL_FROM else 1
    return max(1, min(workers, count))


def _context() -> BaseContext:
    """How worker processes start: forked from a server process that has imported this module
    (a second or so once, then cheap), or spawned where there is none (Windows); never forked
    from this process, as forking a process that has started torch's threads can deadlock."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _in_processes(
    seed: int,
    start: int,
    count: int,
    givens: tuple[int, int],
    kind: Kind,
    processes: int,
    progress: Progress,
) -> tuple[np.ndarray, np.ndarray]:
    """``_generate_range`` over chunks in ``processes`` worker processes."""
    # Small chunks (16 per process, at most _CHUNK puzzles) let progress be reported and the
    # processes finish together, whatever the uneven cost of puzzles.
    size = max(1, min(_CHUNK, count // (16 * processes)))
    firsts = range(start, start + count, size)
    parts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    with ProcessPoolExecutor(processes, mp_context=_context()) as pool:
        futures = {
            pool.submit(
                _generate_range, seed, first, min(first + size, start + count), givens, kind
            ): first
            for first in firsts
        }
        done = 0
        for future in as_completed(futures):
            parts[futures[future]] = future.result()
            done += len(parts[futures[future]][0])
            progress.update(done)
    ordered = [parts[first] for first in firsts]
    return np.concatenate([p for p, _ in ordered]), np.concatenate([s for _, s in ordered])


def describe(count: int, givens: tuple[int, int], kind: Kind, label: str = "Sudoku") -> str:
    """E.g. ``"20,000 training puzzles (22-44 givens)"``, for messages."""
    low, high = givens
    span = f"{low}" if low == high else f"{low}-{high}"
    return f"{count:,} {label} puzzles ({span} givens{_KIND_WORDS[kind]})"


def generate(
    count: int,
    givens: tuple[int, int] = (17, 81),
    seed: int = 0,
    *,
    start: int = 0,
    kind: Kind = "any",
    workers: int | None = None,
    label: str = "Sudoku",
) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles ``start .. start + count - 1`` of the set defined by ``(seed, givens, kind)``.

    Progress (count, rate, time left) goes to this module's logger when it takes a while.

    Args:
        count: number of puzzles.
        givens: inclusive range of the number of givens (see ``generate_puzzle``).
        seed: the set's seed (a non-negative int).
        start: index of the first puzzle, to produce a set in slices.
        kind: ``"minimal"``: minimal puzzles (no given can be removed) with givens in the range;
            ``"hard"``: minimal ones that need a guess (see ``generate_puzzle``).
        workers: processes generating (0 or 1: this one); by default every usable CPU when the
            set takes more than a few seconds. The result does not depend on it.
        label: what the puzzles are for, in the progress messages (``"training"``).

    Returns:
        (puzzles, solutions), (count, 81) uint8 each.
    """
    _check_kind(kind)
    progress = Progress(log, f"generating {describe(count, givens, kind, label)}", count)
    processes = _processes(workers, count, kind)
    if processes == 1:
        out = _generate_range(seed, start, start + count, givens, kind, progress)
    else:
        out = _in_processes(seed, start, count, givens, kind, processes, progress)
    progress.finish()
    return out


def cache_name(count: int, givens: tuple[int, int], seed: int, kind: Kind = "any") -> str:
    """The cache file name: everything that shapes the data, and the generator version."""
    suffix = "" if kind == "any" else f"-{kind}"
    return f"sudoku-v{GENERATOR_VERSION}-n{count}-g{givens[0]}-{givens[1]}{suffix}-s{seed}.npz"


def load_or_generate(
    cache_dir: str | Path,
    count: int,
    givens: tuple[int, int] = (17, 81),
    seed: int = 0,
    *,
    kind: Kind = "any",
    workers: int | None = None,
    label: str = "Sudoku",
) -> tuple[np.ndarray, np.ndarray]:
    """``generate(count, givens, seed, kind=kind)``, read from ``cache_dir`` when a
    previous call stored it there, else generated and stored (atomically, so concurrent ranks
    may all write). Arrays ``puzzles`` and ``solutions`` in an ``.npz``; ``workers`` and
    ``label`` as in ``generate``."""
    path = Path(cache_dir) / cache_name(count, givens, seed, kind)
    if path.exists():
        try:
            with np.load(path) as data:
                puzzles, solved = data["puzzles"], data["solutions"]
        except Exception as e:
            raise DataError(f"{path}: unreadable Sudoku cache ({e}); delete it") from e
        if puzzles.shape != (count, 81) or solved.shape != (count, 81):
            raise DataError(f"{path}: cache holds {puzzles.shape} puzzles, expected ({count}, 81)")
        return puzzles, solved
    puzzles, solved = generate(count, givens, seed, kind=kind, workers=workers, label=label)
    with atomic_write(path) as f:
        np.savez_compressed(f, puzzles=puzzles, solutions=solved)
    return puzzles, solved
