"""An exact Sudoku solver: bitmask constraint propagation and backtracking, in pure Python.

Each blank cell holds its candidates as a 9-bit mask (bit ``d - 1`` for digit ``d``). Placing a
digit removes it from the cell's 20 peers; a peer left with one candidate is placed in turn
(naked single), a digit with one place left in a unit is placed there (hidden single), and an
empty candidate set or a digit with no place in a unit is a contradiction. When propagation
stalls, the search branches on the blank cell with the fewest candidates. Python ints and lists
beat numpy here: the work is many tiny, data-dependent steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .structure import BOX, COLUMN, ROW, UNITS

_ALL = 0x1FF
_POPCOUNT = tuple(bin(m).count("1") for m in range(512))
_DIGIT = {1 << d: d + 1 for d in range(9)}  # single-bit mask -> digit
_PEERS = tuple(
    tuple(
        j
        for j in range(81)
        if j != i and (ROW[i] == ROW[j] or COLUMN[i] == COLUMN[j] or BOX[i] == BOX[j])
    )
    for i in range(81)
)
_UNITS = tuple(tuple(int(i) for i in unit) for unit in UNITS)
_RCB = tuple((int(ROW[i]), int(COLUMN[i]), int(BOX[i])) for i in range(81))


def _place(grid: list[int], cand: list[int], i: int, bit: int) -> bool:
    """Put ``bit`` in cell ``i`` and chase the naked singles it creates; False on contradiction."""
    stack = [(i, bit)]
    while stack:
        i, bit = stack.pop()
        if grid[i]:
            if grid[i] != bit:
                return False
            continue
        if not cand[i] & bit:
            return False
        grid[i] = bit
        cand[i] = 0
        for p in _PEERS[i]:
            c = cand[p]
            if c & bit:
                c ^= bit
                if not c:
                    return False
                cand[p] = c
                if not c & (c - 1):
                    stack.append((p, c))
    return True


def _propagate(grid: list[int], cand: list[int]) -> bool:
    """Place hidden singles until none is left; False on contradiction."""
    changed = True
    while changed:
        changed = False
        for unit in _UNITS:
            once = twice = placed = 0
            for i in unit:
                c = cand[i]
                twice |= once & c
                once |= c
                placed |= grid[i]
            if once | placed != _ALL:
                return False  # some digit has no place left in this unit
            hidden = once & ~twice
            while hidden:
                bit = hidden & -hidden
                hidden ^= bit
                for i in unit:
                    if cand[i] & bit:
                        if not _place(grid, cand, i, bit):
                            return False
                        changed = True
                        break
    return True


def _search(
    grid: list[int],
    cand: list[int],
    limit: int,
    found: list[list[int]],
    rng: np.random.Generator | None,
) -> None:
    """Append solutions (as bit lists) to ``found`` until there are ``limit`` of them."""
    if not _propagate(grid, cand):
        return
    best, best_n = -1, 10
    for i in range(81):
        c = cand[i]
        if c:
            n = _POPCOUNT[c]
            if n < best_n:
                best, best_n = i, n
                if n == 2:
                    break
    if best < 0:
        found.append(grid)
        return
    c = cand[best]
    bits = [1 << d for d in range(9) if c >> d & 1]
    if rng is not None:
        bits = [bits[k] for k in rng.permutation(len(bits))]
    for bit in bits:
        g, k = grid[:], cand[:]
        if _place(g, k, best, bit):
            _search(g, k, limit, found, rng)
            if len(found) >= limit:
                return


def _start(board: Sequence[int]) -> tuple[list[int], list[int]] | None:
    """The search state of a board (bits of the givens, candidates of the blanks), or None when
    two givens conflict or a blank has no candidate."""
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    grid = [0] * 81
    for i, d in enumerate(board):
        if d:
            bit = 1 << (int(d) - 1)
            r, c, b = _RCB[i]
            if (rows[r] | cols[c] | boxes[b]) & bit:
                return None
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            grid[i] = bit
    cand = [0] * 81
    singles = []
    for i in range(81):
        if not grid[i]:
            r, c, b = _RCB[i]
            m = _ALL & ~(rows[r] | cols[c] | boxes[b])
            if not m:
                return None
            cand[i] = m
            if not m & (m - 1):
                singles.append((i, m))
    for i, bit in singles:
        if not _place(grid, cand, i, bit):
            return None
    return grid, cand


def solutions(
    board: Sequence[int] | np.ndarray,
    limit: int = 2,
    exclude: tuple[int, int] | None = None,
    rng: np.random.Generator | None = None,
) -> list[list[int]]:
    """Up to ``limit`` solutions of a board, as lists of 81 digits.

    Args:
        board: 81 digits, 0 = blank (any sequence of ints, or a numpy array).
        limit: stop searching once this many solutions are found.
        exclude: ``(cell, digit)``: a blank cell that must not take this digit. "Does the puzzle
            without this given have a solution other than the known one?" is one such search,
            cheaper than counting to two.
        rng: when given, branches are tried in random digit order (for random full grids).
    """
    state = _start(board.tolist() if isinstance(board, np.ndarray) else board)
    if state is None:
        return []
    grid, cand = state
    if exclude is not None:
        i, d = exclude
        if grid[i] == 1 << (d - 1):
            return []
        if not grid[i]:
            c = cand[i] & ~(1 << (d - 1))
            if not c:
                return []
            cand[i] = c
            if not c & (c - 1) and not _place(grid, cand, i, c):
                return []
    found: list[list[int]] = []
    _search(grid, cand, limit, found, rng)
    return [[_DIGIT[b] for b in g] for g in found]


def count_solutions(board: Sequence[int] | np.ndarray, limit: int = 2) -> int:
    """The number of solutions of a board, counted up to ``limit`` (0 if givens conflict)."""
    return len(solutions(board, limit))


def solve(board: Sequence[int] | np.ndarray) -> np.ndarray | None:
    """The first solution found, as a (81,) uint8 array, or None if there is none."""
    found = solutions(board, limit=1)
    return np.array(found[0], dtype=np.uint8) if found else None
