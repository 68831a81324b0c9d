"""Perfect mazes: generation, encoding, files, pictures and torch datasets. No Lightning."""

from .datasets import GENERATOR_VERSION, GeneratedMazes, StoredMazes
from .files import (
    MazeFormatError,
    format_mazes_text,
    read_mazes,
    write_mazes_npz,
    write_mazes_text,
)
from .generation import (
    Algorithm,
    Channel,
    Maze,
    Site,
    as_mask,
    decode,
    distances,
    encode,
    generate_maze,
    make_example,
    random_endpoints,
    shortest_paths,
)
from .pictures import EXTRA, GOAL, MISSED, OPEN, PATH, START, WALL, render_png, to_rgb

__all__ = [
    "EXTRA",
    "GENERATOR_VERSION",
    "GOAL",
    "MISSED",
    "OPEN",
    "PATH",
    "START",
    "WALL",
    "Algorithm",
    "Channel",
    "GeneratedMazes",
    "Maze",
    "MazeFormatError",
    "Site",
    "StoredMazes",
    "as_mask",
    "decode",
    "distances",
    "encode",
    "format_mazes_text",
    "generate_maze",
    "make_example",
    "random_endpoints",
    "read_mazes",
    "render_png",
    "shortest_paths",
    "to_rgb",
    "write_mazes_npz",
    "write_mazes_text",
]
