"""Seeded generation of Sudoku puzzles with a unique solution, and their disk cache.

Puzzle ``index`` of a set depends only on ``(seed, index)`` and the settings: its random stream
is ``np.random.SeedSequence(seed, spawn_key=(index,))``, so a set is the same whatever order,
slice or number of worker processes produced it, on every machine and rank (with one numpy
version: numpy keeps ``Generator`` streams stable in practice but does not promise it).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError
from ..files import atomic_write
from .solver import solutions

#: Bumped whenever a change to the algorithm changes the puzzles a seed gives (cache names).
GENERATOR_VERSION = 1

# A minimal puzzle above the range means a fresh grid; past this many the range is unreachable.
_MAX_TRIES = 1000


def random_grid(rng: np.random.Generator) -> np.ndarray:
    """A random complete valid grid, (81,) uint8: the solver on an empty board, trying the
    digits of every branch in random order."""
    return np.array(solutions([0] * 81, limit=1, rng=rng)[0], dtype=np.uint8)


def generate_puzzle(
    rng: np.random.Generator, givens: tuple[int, int] = (17, 81), minimal: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One puzzle with a unique solution and a number of givens in ``givens`` (inclusive).

    A target is drawn uniformly from the range; givens of a random full grid are then removed
    in random order, each only if the solution stays unique, until the target is reached or no
    given can go (a minimal puzzle). A minimal puzzle above the target is kept if it is in the
    range, else the attempt starts again from a fresh grid; minimal puzzles have ~20-30 givens,
    so low targets are reached more rarely than high ones, and fewer than ~21 almost never.

    Args:
        rng: the puzzle's own random stream.
        givens: inclusive range of the number of givens.
        minimal: remove givens until none can go (ignoring the target), and retry until the
            minimal puzzle's count is in the range.

    Returns:
        (puzzle, solution), (81,) uint8 each, 0 = blank in the puzzle.
    """
    lo, hi = givens
    if not 17 <= lo <= hi <= 81:
        raise ConfigError(f"givens={givens}: need 17 <= low <= high <= 81")
    for _ in range(_MAX_TRIES):
        solution = random_grid(rng)
        target = 0 if minimal else int(rng.integers(lo, hi + 1))
        puzzle = solution.tolist()
        left = 81
        for i in rng.permutation(81).tolist():
            if left == target:
                break
            d = puzzle[i]
            puzzle[i] = 0
            # Unique iff no solution has another digit in the cell just emptied.
            if solutions(puzzle, limit=1, exclude=(i, d)):
                puzzle[i] = d
            else:
                left -= 1
        if lo <= left <= hi:
            return np.array(puzzle, dtype=np.uint8), solution
    raise ConfigError(
        f"givens={givens}, minimal={minimal}: no puzzle in range after {_MAX_TRIES} grids"
    )


def _generate_range(
    seed: int, start: int, stop: int, givens: tuple[int, int], minimal: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles ``start .. stop - 1``, each from its own stream (also run in worker processes)."""
    pairs = [
        generate_puzzle(
            np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,))),
            givens,
            minimal,
        )
        for index in range(start, stop)
    ]
    puzzles = np.stack([p for p, _ in pairs]) if pairs else np.zeros((0, 81), np.uint8)
    solved = np.stack([s for _, s in pairs]) if pairs else np.zeros((0, 81), np.uint8)
    return puzzles, solved


def generate(
    count: int,
    givens: tuple[int, int] = (17, 81),
    seed: int = 0,
    *,
    start: int = 0,
    minimal: bool = False,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles ``start .. start + count - 1`` of the set defined by ``(seed, givens, minimal)``.

    Args:
        count: number of puzzles.
        givens: inclusive range of the number of givens (see ``generate_puzzle``).
        seed: the set's seed (a non-negative int).
        start: index of the first puzzle, to produce a set in slices.
        minimal: generate minimal puzzles (no given can be removed) with givens in the range.
        workers: worker processes (0 = this one); the result does not depend on it.

    Returns:
        (puzzles, solutions), (count, 81) uint8 each.
    """
    if workers <= 1 or count < 2 * workers:
        return _generate_range(seed, start, start + count, givens, minimal)
    # Several chunks per worker even out the uneven cost of puzzles; spawn, because forking a
    # process that has started torch's threads can deadlock.
    bounds = np.linspace(start, start + count, 4 * workers + 1).astype(int).tolist()
    context = multiprocessing.get_context("spawn")
    work = partial(_generate_range, seed, givens=givens, minimal=minimal)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        parts = list(pool.map(work, bounds[:-1], bounds[1:]))
    return np.concatenate([p for p, _ in parts]), np.concatenate([s for _, s in parts])


def cache_name(count: int, givens: tuple[int, int], seed: int, minimal: bool = False) -> str:
    """The cache file name: everything that shapes the data, and the generator version."""
    kind = "-minimal" if minimal else ""
    return f"sudoku-v{GENERATOR_VERSION}-n{count}-g{givens[0]}-{givens[1]}{kind}-s{seed}.npz"


def load_or_generate(
    cache_dir: str | Path,
    count: int,
    givens: tuple[int, int] = (17, 81),
    seed: int = 0,
    *,
    minimal: bool = False,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``generate(count, givens, seed, minimal=minimal)``, read from ``cache_dir`` when a
    previous call stored it there, else generated and stored (atomically, so concurrent ranks
    may all write). Arrays ``puzzles`` and ``solutions`` in an ``.npz``."""
    path = Path(cache_dir) / cache_name(count, givens, seed, minimal)
    if path.exists():
        try:
            with np.load(path) as data:
                puzzles, solved = data["puzzles"], data["solutions"]
        except Exception as e:
            raise DataError(f"{path}: unreadable Sudoku cache ({e}); delete it") from e
        if puzzles.shape != (count, 81) or solved.shape != (count, 81):
            raise DataError(f"{path}: cache holds {puzzles.shape} puzzles, expected ({count}, 81)")
        return puzzles, solved
    puzzles, solved = generate(count, givens, seed, minimal=minimal, workers=workers)
    with atomic_write(path) as f:
        np.savez_compressed(f, puzzles=puzzles, solutions=solved)
    return puzzles, solved
