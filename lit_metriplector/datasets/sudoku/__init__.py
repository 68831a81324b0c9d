"""Sudoku: exact solver, seeded generation and cache, puzzle files, constraint structure,
augmentation, a torch Dataset and pictures. Plain numpy/torch, no Lightning.

Boards are 81 digits in row-major order, 0 = blank: (81,) or (N, 81) uint8 numpy arrays in the
data library, long tensors in batches. File formats: see ``files``.
"""

from .augment import SudokuDataset, augment
from .files import read_puzzles, write_puzzles
from .generation import (
    GENERATOR_VERSION,
    Kind,
    cache_name,
    generate,
    generate_puzzle,
    load_or_generate,
    random_grid,
)
from .pictures import format_board, render_board
from .solver import count_solutions, guesses, solutions, solve
from .structure import UNITS, cell_name, constraint_masks, is_valid_solution, peers

__all__ = [
    "GENERATOR_VERSION",
    "Kind",
    "UNITS",
    "SudokuDataset",
    "augment",
    "cache_name",
    "cell_name",
    "constraint_masks",
    "count_solutions",
    "format_board",
    "generate",
    "generate_puzzle",
    "guesses",
    "is_valid_solution",
    "load_or_generate",
    "peers",
    "random_grid",
    "read_puzzles",
    "render_board",
    "solutions",
    "solve",
    "write_puzzles",
]
