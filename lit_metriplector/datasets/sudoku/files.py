"""Sudoku puzzle files: reading (three common layouts) and writing CSV.

A board is written as 81 characters in row-major order: ``1``-``9`` for digits and ``0`` or
``.`` for blanks. ``read_puzzles`` takes the CSV reader for a ``.csv`` suffix or a first line
with a comma, else the text reader:

CSV, Kaggle style: a header naming the puzzle column (``puzzle``, ``quizzes`` or ``question``)
  and optionally the solution column (``solution``, ``solutions`` or ``answer``); other columns
  are ignored, so the Sudoku-Extreme layout ``source,question,answer,rating`` reads as is::

      puzzle,solution
      004300209005009001070060043006002087190007400050083000600000105003508690042910300,864371259...

Text: one puzzle per line; blank lines and lines starting with ``#`` are skipped::

      # from the newspaper
      ..43..2.9..5..9..1.7..6..43..6..2.871..7..4...5.83...6.....1.5..35.869..42.91.3..

Where a file has no solutions, each puzzle must have exactly one, found by the project's solver.
Every problem raises ``DataError`` naming the file and the 1-based line: a missing file, a missing
or unknown CSV header, a board that is not 81 characters, a bad character, givens that conflict
(naming the cells, ``r{row}c{column}``), a puzzle with no or several solutions, a solution that
is not a valid grid or contradicts its givens. ``write_puzzles`` writes the Kaggle layout with
``0`` for blanks (atomically).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from ...errors import DataError
from ..files import atomic_write
from ..progress import Progress
from . import solver
from .structure import UNITS, cell_name, is_valid_solution

PUZZLE_COLUMNS = ("puzzle", "quizzes", "question")
SOLUTION_COLUMNS = ("solution", "solutions", "answer")

_BAD = np.ones(256, dtype=bool)
_BAD[[ord(c) for c in "0123456789."]] = False
_VALUE = np.zeros(256, dtype=np.uint8)
_VALUE[[ord(c) for c in "123456789"]] = np.arange(1, 10, dtype=np.uint8)
_CHUNK = 65536  # rows per vectorised check, to bound memory on million-puzzle files

log = logging.getLogger(__name__)


def _parse(path: Path, texts: list[str], lines: list[int], what: str) -> np.ndarray:
    """(N, 81) uint8 boards from their strings; ``lines`` are the strings' line numbers."""
    for text, line in zip(texts, lines, strict=True):
        if len(text) != 81:
            raise DataError(f"{path}, line {line}: {what} has {len(text)} characters, expected 81")
    raw = np.frombuffer("".join(texts).encode("utf-8", "replace"), dtype=np.uint8)
    if raw.size != 81 * len(texts):  # a non-ASCII character took several bytes
        for text, line in zip(texts, lines, strict=True):
            if not text.isascii():
                bad = next(c for c in text if not c.isascii())
                raise DataError(f"{path}, line {line}: bad character {bad!r} in {what}")
    raw = raw.reshape(len(texts), 81)
    bad = _BAD[raw]
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"{path}, line {lines[row]}: bad character {chr(raw[row, col])!r} at position "
            f"{col + 1} of {what} (expected 1-9, or 0 or . for a blank)"
        )
    return _VALUE[raw]


def _check_givens(path: Path, puzzles: np.ndarray, lines: list[int]) -> None:
    """Raise on the first puzzle where a digit is given twice in a unit."""
    for first in range(0, len(puzzles), _CHUNK):
        units = np.sort(puzzles[first : first + _CHUNK][:, UNITS], axis=-1)  # (n, 27, 9)
        clash = ((units[..., 1:] == units[..., :-1]) & (units[..., 1:] > 0)).any(axis=(1, 2))
        if clash.any():
            row = first + int(np.argmax(clash))
            board = puzzles[row]
            for unit in UNITS:
                for a in range(9):
                    for b in range(a + 1, 9):
                        i, j = unit[a], unit[b]
                        if board[i] and board[i] == board[j]:
                            raise DataError(
                                f"{path}, line {lines[row]}: givens conflict: {cell_name(i)} "
                                f"and {cell_name(j)} are both {board[i]}"
                            )


def _check_solutions(path: Path, puzzles: np.ndarray, solved: np.ndarray, lines: list[int]) -> None:
    """Raise on the first solution that is not a valid grid or contradicts its puzzle."""
    for first in range(0, len(puzzles), _CHUNK):
        part = slice(first, first + _CHUNK)
        ok = is_valid_solution(solved[part])
        if not ok.all():
            row = first + int(np.argmin(ok))
            raise DataError(
                f"{path}, line {lines[row]}: the solution is not a valid grid (a blank, or a "
                "digit repeated in a row, column or box)"
            )
        keeps = (puzzles[part] == 0) | (puzzles[part] == solved[part])
        if not keeps.all():
            row, cell = np.argwhere(~keeps)[0]
            row += first
            raise DataError(
                f"{path}, line {lines[row]}: the solution contradicts the given at "
                f"{cell_name(cell)} (given {puzzles[row, cell]}, solution {solved[row, cell]})"
            )


def _solve_all(path: Path, puzzles: np.ndarray, lines: list[int]) -> np.ndarray:
    """The unique solution of each puzzle (with progress on the logger for long files)."""
    out = np.empty_like(puzzles)
    progress = Progress(log, f"solving the {len(puzzles):,} puzzles of {path}", len(puzzles))
    for k, puzzle in enumerate(puzzles.tolist()):
        found = solver.solutions(puzzle, limit=2)
        if len(found) != 1:
            problem = "has no solution" if not found else "has several solutions"
            raise DataError(
                f"{path}, line {lines[k]}: the puzzle {problem} (a file without solutions "
                "must hold puzzles with exactly one)"
            )
        out[k] = found[0]
        progress.update(k + 1)
    progress.finish()
    return out


def _read_csv(path: Path) -> tuple[list[str], list[str] | None, list[int]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}, line 1: empty file, expected a CSV header")
        names = [h.strip().lower() for h in header]
        if any(len(n) == 81 for n in names):
            raise DataError(f"{path}, line 1: missing CSV header, expected e.g. 'puzzle,solution'")
        p_col = next((names.index(n) for n in PUZZLE_COLUMNS if n in names), None)
        s_col = next((names.index(n) for n in SOLUTION_COLUMNS if n in names), None)
        if p_col is None:
            raise DataError(
                f"{path}, line 1: unknown CSV header {','.join(header)!r}: no puzzle column "
                f"(one of {', '.join(PUZZLE_COLUMNS)})"
            )
        needed = 1 + max(c for c in (p_col, s_col) if c is not None)
        texts, answers, lines = [], [], []
        for record in reader:
            if not any(field.strip() for field in record):
                continue
            line = reader.line_num
            if len(record) < needed:
                raise DataError(f"{path}, line {line}: {len(record)} fields, expected {len(names)}")
            texts.append(record[p_col].strip())
            if s_col is not None:
                answers.append(record[s_col].strip())
            lines.append(line)
    return texts, (answers if s_col is not None else None), lines


def _read_text(path: Path) -> tuple[list[str], None, list[int]]:
    texts, lines = [], []
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            text = text.strip()
            if text and not text.startswith("#"):
                texts.append(text)
                lines.append(line)
    return texts, None, lines


def read_puzzles(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Puzzles and their solutions from a CSV or text file (see the module docstring).

    Returns:
        (puzzles, solutions), (N, 81) uint8 each, 0 = blank in the puzzles.

    Raises:
        DataError: naming the file and line of the first problem found.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such Sudoku file")
    try:
        with path.open(encoding="utf-8") as f:
            first = next((t for t in f if t.strip() and not t.startswith("#")), "")
        is_csv = path.suffix.lower() == ".csv" or "," in first
        texts, answers, lines = _read_csv(path) if is_csv else _read_text(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from e
    if not texts:
        raise DataError(f"{path}: no puzzles in the file")
    puzzles = _parse(path, texts, lines, "the puzzle")
    _check_givens(path, puzzles, lines)
    if answers is None:
        return puzzles, _solve_all(path, puzzles, lines)
    solved = _parse(path, answers, lines, "the solution")
    _check_solutions(path, puzzles, solved, lines)
    return puzzles, solved


def write_puzzles(
    path: str | Path, puzzles: np.ndarray, solutions: np.ndarray | None = None
) -> None:
    """Write boards as a ``puzzle[,solution]`` CSV with ``0`` for blanks, atomically.

    Args:
        path: the file to write.
        puzzles: (N, 81) digits, 0 = blank.
        solutions: (N, 81) digits, or None for a file of puzzles only.
    """
    columns = [np.asarray(puzzles, dtype=np.uint8).reshape(-1, 81)]
    if solutions is not None:
        columns.append(np.asarray(solutions, dtype=np.uint8).reshape(-1, 81))
    texts = [(c + ord("0")).view("S81").ravel().astype(str) for c in columns]
    with atomic_write(path, "w") as f:
        f.write("puzzle,solution\n" if solutions is not None else "puzzle\n")
        for row in zip(*texts, strict=True):
            f.write(",".join(row) + "\n")
