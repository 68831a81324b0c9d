"""An exact Sudoku solver on one Python integer: propagation of singles, and backtracking.

A board state is an integer of 9 x 81 bits: bit ``81 * (d - 1) + i`` is set while digit ``d`` may
still go in cell ``i`` (a "block" of 81 bits per digit). Placing a digit is one AND with a
precomputed mask (the digit leaves the cell's 20 peers, the other digits leave the cell).
Propagation looks at all cells and units at once: a few shifts, ANDs and ORs of the whole integer
tell, for every cell, row, column and box and every digit, whether a digit has at least one and
at least two places. That gives the contradictions (a cell with no candidate, a digit with no
place left in a unit), the naked singles (a cell with one candidate) and the hidden singles (a
digit with one place in a unit); naked ones are placed first, as they are cheaper to find. When
propagation stalls, the search branches on the blank cell with the fewest candidates.

Python's integers suit this better than lists of cells or numpy: the work is many tiny,
data-dependent steps, and one operation on a 729-bit integer costs little more than on a small
one, so every cell and every unit is looked at for the price of a few operations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .structure import BOX, COLUMN, ROW

#: One block of 81 bits: a set of cells.
CELLS = (1 << 81) - 1
#: Every digit possible in every cell: the state of the empty board.
EMPTY = (1 << 729) - 1
#: Times a set of cells: those cells in every digit block.
EVERY_DIGIT = sum(1 << 81 * d for d in range(9))


def bit(cell: int, digit: int) -> int:
    """The position of "``digit`` (1..9) in ``cell``" in a state."""
    return 81 * (digit - 1) + cell


def _peers(i: int) -> int:
    """The 20 peers of cell ``i``, as a set."""
    return sum(
        1 << j
        for j in range(81)
        if j != i and (ROW[i] == ROW[j] or COLUMN[i] == COLUMN[j] or BOX[i] == BOX[j])
    )


_PEERS = [_peers(i) for i in range(81)]
#: ``state & PLACE[bit(cell, digit)]`` places the digit: it leaves the peers, the others leave.
PLACE = tuple(
    EMPTY & ~(_PEERS[p % 81] << 81 * (p // 81) | (EVERY_DIGIT ^ 1 << 81 * (p // 81)) << p % 81)
    for p in range(729)
)
_CELL = tuple(1 << p % 81 for p in range(729))  # the cell of a position, as a set


def _first_of_each(groups: Sequence[int]) -> int:
    """The first cell of each group, in every digit block."""
    return sum(1 << g for g in groups) * EVERY_DIGIT


# The cells of a unit are nine bits at the offsets {0, near, 2 near} + {0, far, 2 far} from the
# unit's first cell, and so are the digit blocks of a cell (near 81, far 243). Whether at least
# one and at least two of the nine are set is then a tree of shifts and ORs, with the pairs ANDed
# on the way, read at the first bit: a handful of operations for all units and digits at once.
# Rows (far 3) and boxes (far 9) share the first step, the triples along a row (near 1); columns
# start from the triples down a column (near 9, far 27). Per kind of unit: (far, the first cells
# in every digit block, the multiplier that spreads a first cell over its unit).
_ROWS = (3, _first_of_each(range(0, 81, 9)), 0x1FF)
_BOXES = (
    9,
    _first_of_each((0, 3, 6, 27, 30, 33, 54, 57, 60)),
    sum(1 << r * 9 + c for r in range(3) for c in range(3)),
)
_COLUMNS = (27, _first_of_each(range(9)), sum(1 << 9 * r for r in range(9)))
_UNIT_KINDS = ((1, (_ROWS, _BOXES)), (9, (_COLUMNS,)))


def _hidden_singles(x: int) -> int | None:
    """The positions of the digits that have one place left in a unit (placed ones included),
    or None when a digit has no place left in some unit."""
    found = 0
    for near, kinds in _UNIT_KINDS:
        b, c = x >> near, x >> 2 * near
        ab = x | b
        once3, twice3 = ab | c, x & b | c & ab
        for far, first, spread in kinds:
            b, c = once3 >> far, once3 >> 2 * far
            ab = once3 | b
            if (ab | c) & first != first:
                return None
            twice = twice3 | twice3 >> far | twice3 >> 2 * far | once3 & b | c & ab
            found |= x & (first & ~twice) * spread
    return found


def propagate(x: int, placed: int) -> tuple[int, int] | None:
    """Place naked and hidden singles until none is left.

    Args:
        x: the state.
        placed: the cells whose digit is placed (given or deduced), as a set of 81 bits.

    Returns:
        ``(x, placed)`` where propagation stalls, or None on a contradiction.
    """
    while True:
        # Per cell, at least one and at least two candidates (the tree above, near 81, far 243).
        b, c = x >> 81, x >> 162
        ab = x | b
        once, twice = ab | c, x & b | c & ab
        b, c = once >> 243, once >> 486
        ab = once | b
        once, twice = ab | c, twice | twice >> 243 | twice >> 486 | once & b | c & ab
        if once & CELLS != CELLS:
            return None  # a cell with no candidate left
        new = x & (CELLS & ~(twice | placed)) * EVERY_DIGIT
        if not new:
            if placed == CELLS:
                return x, placed  # solved: every cell holds one digit, none twice in a unit
            hidden = _hidden_singles(x)
            if hidden is None:
                return None
            new = hidden & ~(placed * EVERY_DIGIT)
            if not new:
                return x, placed
        while new:
            low = new & -new
            new ^= low
            p = low.bit_length() - 1
            x &= PLACE[p]
            placed |= _CELL[p]


def _fewest_candidates(x: int, free: int) -> int:
    """The first of the ``free`` cells with two candidates, else one with the fewest."""
    best, fewest = -1, 10
    while free:
        low = free & -free
        free ^= low
        cell = low.bit_length() - 1
        count = (x >> cell & EVERY_DIGIT).bit_count()
        if count < fewest:
            best, fewest = cell, count
            if count == 2:  # the fewest a free cell has after propagation
                break
    return best


def search(
    x: int,
    placed: int,
    limit: int,
    found: list[int],
    order: Sequence[Sequence[int]] | None = None,
    first_blank: bool = False,
    nodes: list[int] | None = None,
) -> None:
    """Depth-first search: append the states of solutions to ``found`` until it holds ``limit``.

    Args:
        x: the state.
        placed: the cells whose digit is placed, as a set of 81 bits.
        limit: stop once ``found`` holds this many.
        found: where solutions go (complete states).
        order: per cell, the digits (1..9) in the order to try them at a branch; by default
            ascending. Random orders give random grids; a known solution's digit first finds a
            solution close to it.
        first_blank: branch on the first blank cell instead of one with the fewest candidates:
            cheaper where any order fills the board, as when drawing a random grid.
        nodes: if given, ``nodes[0]`` counts the calls (the states searched).
    """
    if nodes is not None:
        nodes[0] += 1
    state = propagate(x, placed)
    if state is None:
        return
    x, placed = state
    if placed == CELLS:
        found.append(x)
        return
    blank = CELLS & ~placed
    cell = (blank & -blank).bit_length() - 1 if first_blank else _fewest_candidates(x, blank)
    for digit in order[cell] if order is not None else range(1, 10):
        p = 81 * (digit - 1) + cell  # bit(cell, digit)
        if x >> p & 1:
            search(x & PLACE[p], placed | 1 << cell, limit, found, order, first_blank, nodes)
            if len(found) >= limit:
                return


def start(board: Sequence[int]) -> tuple[int, int] | None:
    """The state of a board and its placed cells, or None when two givens conflict."""
    x, placed = EMPTY, 0
    for cell, digit in enumerate(board):
        if digit:
            p = 81 * (int(digit) - 1) + cell  # int: numpy's uint8 would wrap
            if not x >> p & 1:
                return None
            x &= PLACE[p]
            placed |= 1 << cell
    return x, placed


def digits(x: int) -> list[int]:
    """The 81 digits of a complete state (0 where a cell has none)."""
    out = [0] * 81
    for d in range(9):
        block = x >> 81 * d & CELLS
        while block:
            low = block & -block
            block ^= low
            out[low.bit_length() - 1] = d + 1
    return out


def solutions(
    board: Sequence[int] | np.ndarray, limit: int = 2, exclude: tuple[int, int] | None = None
) -> list[list[int]]:
    """Up to ``limit`` solutions of a board, as lists of 81 digits.

    Args:
        board: 81 digits, 0 = blank (any sequence of ints, or a numpy array).
        limit: stop searching once this many solutions are found.
        exclude: ``(cell, digit)``: a cell that must not take this digit. "Does the puzzle
            without this given have a solution other than the known one?" is one such search,
            cheaper than counting to two.
    """
    state = start(board.tolist() if isinstance(board, np.ndarray) else board)
    if state is None:
        return []
    x, placed = state
    if exclude is not None:
        cell, digit = exclude
        x &= ~(1 << bit(cell, digit))
    found: list[int] = []
    search(x, placed, limit, found)
    return [digits(s) for s in found]


def guesses(board: Sequence[int] | np.ndarray) -> int:
    """How hard a board is for this solver: the guesses its search makes, after propagating
    singles, to find every solution (two at most: proving a solution unique explores the whole
    tree). 0: singles alone solve the board. -1: two givens conflict."""
    state = start(board.tolist() if isinstance(board, np.ndarray) else board)
    if state is None:
        return -1
    nodes = [0]
    search(*state, 2, [], nodes=nodes)
    return nodes[0] - 1


def count_solutions(board: Sequence[int] | np.ndarray, limit: int = 2) -> int:
    """The number of solutions of a board, counted up to ``limit`` (0 if givens conflict)."""
    return len(solutions(board, limit))


def solve(board: Sequence[int] | np.ndarray) -> np.ndarray | None:
    """The first solution found, as a (81,) uint8 array, or None if there is none."""
    found = solutions(board, limit=1)
    return np.array(found[0], dtype=np.uint8) if found else None
