"""Maze generation, shortest paths, maze files and MazeDataModule."""

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from lit_metriplector.datamodules import MazeDataModule
from lit_metriplector.datasets.mazes import (
    EXTRA,
    GOAL,
    MISSED,
    OPEN,
    PATH,
    START,
    WALL,
    GeneratedMazes,
    Maze,
    MazeFormatError,
    decode,
    encode,
    generate_maze,
    make_example,
    random_endpoints,
    read_mazes,
    render_png,
    shortest_paths,
    to_rgb,
    write_mazes_npz,
    write_mazes_text,
)
from tests.recording import fit_recording

ALGORITHMS = ["dfs", "kruskal", "wilson"]


def neighbour_count(mask: np.ndarray) -> np.ndarray:
    """Number of 4-neighbours of each site that are in the mask."""
    p = np.pad(mask, 1).astype(int)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]


def reachable(open: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Flood fill by repeated dilation: independent of the BFS under test."""
    seen = np.zeros_like(open)
    seen[start] = True
    while True:
        grown = (seen | (neighbour_count(seen) > 0)) & open
        if (grown == seen).all():
            return seen
        seen = grown


def dead_end_filling(open: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
    """In a tree, pruning leaves other than the endpoints until none are left leaves the path."""
    keep = open.copy()
    while True:
        leaves = keep & (neighbour_count(keep) <= 1)
        leaves[start] = leaves[goal] = False
        if not leaves.any():
            return keep
        keep &= ~leaves


def sample_maze(cells: int, seed: int, algorithm: str = "dfs") -> Maze:
    rng = np.random.default_rng(seed)
    open = generate_maze(cells, rng, algorithm)
    return Maze(open, *random_endpoints(cells, rng))


# -----------------------------------------------------------------------------
# generation and shortest paths


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("cells", [1, 2, 7, 16])
def test_generate_maze_is_perfect(algorithm: str, cells: int) -> None:
    open = generate_maze(cells, np.random.default_rng(cells), algorithm)
    g = 2 * cells + 1
    assert open.shape == (g, g) and open.dtype == bool
    assert open[1::2, 1::2].all()  # every cell
    assert not open[::2, ::2].any()  # wall corners and border
    assert not (open[0].any() or open[-1].any() or open[:, 0].any() or open[:, -1].any())
    wall_sites = open.sum() - cells**2
    assert wall_sites == cells**2 - 1  # a connected graph with n - 1 edges is a tree
    assert reachable(open, (1, 1)).sum() == open.sum()


def test_generate_maze_depends_on_rng_and_checks_arguments() -> None:
    a, b = (generate_maze(9, np.random.default_rng(s), "wilson") for s in (0, 1))
    assert not (a == b).all()
    with pytest.raises(ValueError, match="algorithm"):
        generate_maze(5, np.random.default_rng(0), "prim")
    with pytest.raises(ValueError, match="cells"):
        generate_maze(0, np.random.default_rng(0))


@pytest.mark.parametrize("loops", [0.05, 0.1, 0.3, 1.0])
def test_loops_knock_out_that_fraction_of_the_interior_walls(loops: float) -> None:
    cells = 12
    perfect = generate_maze(cells, np.random.default_rng(3))
    looped = generate_maze(cells, np.random.default_rng(3), loops=loops)
    interior = 2 * cells * (cells - 1) - (cells**2 - 1)  # walls between cells a tree leaves
    assert (perfect <= looped).all()  # the same carving, then walls opened
    assert looped.sum() - perfect.sum() == round(loops * interior)
    assert not looped[::2, ::2].any()  # corners and border stay walls


def test_no_loops_draws_nothing_more() -> None:
    """Perfect mazes are what they were before loops existed: no extra random draws."""
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    assert (generate_maze(9, rng_a) == generate_maze(9, rng_b, loops=0.0)).all()
    assert rng_a.random() == rng_b.random()
    with pytest.raises(ValueError, match="loops"):
        generate_maze(5, np.random.default_rng(0), loops=1.5)


def all_shortest_path_sites(open: np.ndarray, start, goal) -> np.ndarray:
    """By brute force: every simple start-goal path, the union of the shortest ones."""
    best, union = [np.inf], np.zeros_like(open)

    def walk(site, path):
        if len(path) > best[0]:
            return
        if site == goal:
            if len(path) < best[0]:
                best[0] = len(path)
                union[:] = False
            for p in path:
                union[p] = True
            return
        r, c = site
        for n in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if open[n] and n not in path:
                walk(n, [*path, n])

    walk(start, [start])
    return union


@pytest.mark.parametrize("seed", range(6))
def test_targets_mark_every_shortest_path(seed: int) -> None:
    x, y = make_example(3, np.random.SeedSequence([seed]), loops=0.6)
    maze = decode(x)
    expected = all_shortest_path_sites(maze.open, maze.start, maze.goal)
    assert ((y > 0.5) == expected).all()


def test_random_endpoints() -> None:
    rng = np.random.default_rng(0)
    for _ in range(100):
        start, goal = random_endpoints(3, rng)
        assert start != goal
        assert all(v % 2 == 1 and 1 <= v <= 5 for v in (*start, *goal))
    with pytest.raises(ValueError, match="cells >= 2"):
        random_endpoints(1, rng)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_shortest_path_is_the_unique_path(algorithm: str) -> None:
    for seed in range(5):
        maze = sample_maze(12, seed, algorithm)
        path = shortest_paths(maze.open, maze.start, maze.goal)
        assert path.shape == maze.open.shape and path.dtype == bool
        assert (path == dead_end_filling(maze.open, maze.start, maze.goal)).all()
        assert not (path & ~maze.open).any()
        # a simple chain: the endpoints have one path neighbour, every other site two
        degree = neighbour_count(path)[path]
        assert path[maze.start] and path[maze.goal]
        assert neighbour_count(path)[maze.start] == neighbour_count(path)[maze.goal] == 1
        assert (degree == 1).sum() == 2 and (degree <= 2).all()
        assert reachable(path, maze.start)[maze.goal]


def test_shortest_path_on_a_grid_with_loops_and_unreachable_goals() -> None:
    field = np.ones((5, 7), dtype=bool)  # no walls: many shortest paths, all of length 4 + 6
    path = shortest_paths(field, (0, 0), (4, 6))
    assert path.all()  # between opposite corners every site lies on one of them
    assert shortest_paths(field, (0, 0), (0, 6)).sum() == 7  # along an edge there is one
    field[:, 3] = False
    assert shortest_paths(field, (0, 0), (4, 6)) is None
    assert shortest_paths(field, (0, 3), (4, 0)) is None  # start on a wall
    assert shortest_paths(field, (2, 2), (2, 2)).sum() == 1


def test_encode_decode() -> None:
    maze = sample_maze(6, 3)
    x = encode(maze.open, maze.start, maze.goal)
    assert x.shape == (3, 13, 13) and x.dtype == np.float32
    assert x[1].sum() == x[2].sum() == 1 and x[1][maze.start] == x[2][maze.goal] == 1
    back = decode(torch.from_numpy(x))
    assert (back.open == maze.open).all()
    assert (back.start, back.goal) == (maze.start, maze.goal)


def test_make_example_is_deterministic() -> None:
    x, y = make_example(5, np.random.SeedSequence([1, 2]), "kruskal")
    assert x.shape == (3, 11, 11) and y.shape == (11, 11)
    assert x.dtype == y.dtype == np.float32
    x2, y2 = make_example(5, np.random.SeedSequence([1, 2]), "kruskal")
    assert (x == x2).all() and (y == y2).all()
    x3, _ = make_example(5, np.random.default_rng(np.random.SeedSequence([1, 3])), "kruskal")
    assert not (x == x3).all()


@pytest.mark.parametrize("loops", [0.0, 0.2])
def test_generation_ignores_global_seeds(loops: float) -> None:
    """What makes every DDP rank and worker see the same data."""
    mazes = GeneratedMazes(cells=6, size=4, algorithm="wilson", seed=7, split="train", loops=loops)
    items = []
    for global_seed in (0, 1):
        np.random.seed(global_seed)  # noqa: NPY002 (the legacy global state is the point)
        torch.manual_seed(global_seed)
        items.append([mazes[i] for i in (3, 0, 2)])
    for a, b in zip(*items, strict=True):
        assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(items[0][0]["input"], items[0][1]["input"])


# -----------------------------------------------------------------------------
# files


def test_text_round_trip(tmp_path: Path) -> None:
    mazes = [sample_maze(4, seed) for seed in range(3)]
    file = tmp_path / "mazes.txt"
    write_mazes_text(file, mazes)
    text = file.read_text()
    assert text.count("S") == text.count("G") == 3 and "*" not in text
    assert text.split("\n\n")[0].splitlines()[0] == "#" * 9
    back = read_mazes(file)
    assert len(back) == 3
    for a, b in zip(mazes, back, strict=True):
        assert (a.open == b.open).all() and (a.start, a.goal) == (b.start, b.goal)
        assert b.path is None

    # solved: the marks come back as the path, endpoints included
    solutions = [shortest_paths(m.open, m.start, m.goal) for m in mazes]
    write_mazes_text(file, mazes, predictions=[s.astype(np.float32) for s in solutions])
    for solution, b in zip(solutions, read_mazes(file), strict=True):
        assert (b.path == solution).all()


def test_text_writer_drops_marks_on_walls_and_reader_accepts_o(tmp_path: Path) -> None:
    maze = sample_maze(3, 0)
    prediction = ~maze.open  # every wall, nothing open
    file = tmp_path / "walls.txt"
    write_mazes_text(file, [maze], [prediction])
    assert "*" not in file.read_text()
    file.write_text("#####\n#SoG#\n#####\n")
    assert read_mazes(file)[0].path.sum() == 3


@pytest.mark.parametrize("stacked", [True, False])
def test_npz_round_trip(tmp_path: Path, stacked: bool) -> None:
    mazes = [sample_maze(5, seed, "wilson") for seed in range(2 if stacked else 1)]
    file = tmp_path / "mazes.npz"
    if stacked:
        prediction = [~m.open for m in mazes]  # npz keeps marks on walls
        write_mazes_npz(file, mazes, prediction)
    else:  # a hand-made (G, G) file with float values
        m = mazes[0]
        start, goal = np.zeros_like(m.open, float), np.zeros_like(m.open, float)
        start[m.start] = goal[m.goal] = 1.0
        np.savez(file, open=m.open.astype(float), start=start, goal=goal)
    back = read_mazes(file)
    assert len(back) == len(mazes)
    for a, b in zip(mazes, back, strict=True):
        assert (a.open == b.open).all() and (a.start, a.goal) == (b.start, b.goal)
        assert (b.path == ~a.open).all() if stacked else b.path is None


def npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    def write(file: Path) -> None:
        np.savez(file, **arrays)

    return write


def npy(array: np.ndarray) -> Callable[[Path], None]:
    def write(file: Path) -> None:
        with file.open("wb") as f:  # a path would get ".npy" appended
            np.save(f, array)

    return write


def text(content: str | bytes) -> Callable[[Path], None]:
    def write(file: Path) -> None:
        file.write_bytes(content if isinstance(content, bytes) else content.encode())

    return write


GOOD = np.array([[0, 0, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
S = np.array([[0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
G = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])
CUT = np.array([[0, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]])

BAD_FILES = {
    "unknown_character": (
        "a.txt",
        text("#####\n#S.G#\n##x##\n"),
        "unknown character 'x' at line 3",
    ),
    "ragged_rows": ("a.txt", text("#####\n#S.G#\n####\n"), "line 3 has 4 characters"),
    "no_start": ("a.txt", text("#####\n#..G#\n#####\n"), "has no start"),
    "no_goal": ("a.txt", text("#####\n#S..#\n#####\n"), "has no goal"),
    "two_starts": ("a.txt", text("#####\n#SSG#\n#####\n"), "has 2 starts"),
    "two_goals": ("a.txt", text("#####\n#SGG#\n#####\n"), "has 2 goals"),
    "no_path": ("a.txt", text("#####\n#S#G#\n#####\n"), "no path from the start"),
    "second_maze_bad": (
        "a.txt",
        text("#####\n#S.G#\n#####\n\n\n#####\n#S#G#\n#####\n"),
        "maze 1 (line 6): no path",
    ),
    "mazes_of_two_shapes": (
        "a.txt",
        text("#####\n#S.G#\n#####\n\n###\n#S#\n#G#\n###\n"),
        "shape (4, 3) differs from maze 0's (3, 5)",
    ),
    "empty_text": ("a.txt", text(""), "the file is empty"),
    "blank_text": ("a.txt", text("\n  \n\n"), "contains no mazes"),
    "unknown_suffix": ("a.csv", text("#####\n#S.G#\n#####\n"), "unknown suffix '.csv'"),
    "non_binary": ("a.npz", npz(open=GOOD * 2, start=S, goal=G), "array 'open' has value 2"),
    "non_binary_float": ("a.npz", npz(open=GOOD, start=S * 0.5, goal=G), "values must be 0 or 1"),
    "missing_array": ("a.npz", npz(open=GOOD, start=S), "missing arrays ['goal']"),
    "unexpected_array": ("a.npz", npz(open=GOOD, start=S, goal=G, wall=S), "unexpected arrays"),
    "shapes_disagree": (
        "a.npz",
        npz(open=GOOD, start=S[None], goal=G),
        "arrays disagree in shape",
    ),
    "bad_ndim": ("a.npz", npz(open=GOOD[0], start=S[0], goal=G[0]), "need (G, G) or (N, G, G)"),
    "zero_mazes": (
        "a.npz",
        npz(open=GOOD[None, :0], start=S[None, :0], goal=G[None, :0]),
        "no mazes",
    ),
    "npz_no_start": ("a.npz", npz(open=GOOD, start=S * 0, goal=G), "maze 0: has no start"),
    "npz_two_goals": ("a.npz", npz(open=GOOD, start=S, goal=G + S), "has 2 goals"),
    "npz_start_on_wall": ("a.npz", npz(open=GOOD, start=np.roll(S, 1, 0), goal=G), "on a wall"),
    "npz_same_site": ("a.npz", npz(open=GOOD, start=S, goal=S), "the same site"),
    "npz_no_path": ("a.npz", npz(open=CUT, start=S, goal=G), "no path"),
    "npz_second_maze": (
        "a.npz",
        npz(open=np.stack([GOOD, CUT]), start=np.stack([S, S]), goal=np.stack([G, G])),
        "maze 1: no path",
    ),
    "binary_text": ("a.txt", text(b"#\xff#"), "not a UTF-8 text file"),
    "empty_npz": ("a.npz", text(""), "the file is empty"),
    "not_a_zip": ("a.npz", text("hello"), "not a readable .npz"),
    "npy_not_npz": ("a.npz", npy(GOOD), "single .npy array"),
    "object_array": ("a.npz", npz(open=np.array([None]), start=S, goal=G), "unreadable array"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_files_raise_maze_format_error(tmp_path: Path, case: str) -> None:
    name, write, problem = BAD_FILES[case]
    file = tmp_path / name
    write(file)
    with pytest.raises(MazeFormatError) as error:
        read_mazes(file)
    assert str(file) in str(error.value) and problem in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_mazes(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        MazeDataModule(test_files=[str(tmp_path / "nope.npz")])


# -----------------------------------------------------------------------------
# pictures


def test_to_rgb_and_render_png(tmp_path: Path) -> None:
    maze = sample_maze(4, 1)
    target = shortest_paths(maze.open, maze.start, maze.goal)
    prediction = target.copy()
    wrong, missed = tuple(np.argwhere(maze.open & ~target)[0]), tuple(np.argwhere(target)[1])
    prediction[wrong], prediction[missed] = True, False
    rgb = to_rgb(maze.open, maze.start, maze.goal, prediction.astype(np.float32), target)
    assert rgb.shape == (3, 9, 9) and rgb.dtype == np.uint8

    def pixel(site: tuple[int, int]) -> tuple[int, ...]:
        return tuple(int(v) for v in rgb[:, site[0], site[1]])

    assert pixel(maze.start) == START and pixel(maze.goal) == GOAL
    assert pixel(wrong) == EXTRA and pixel(missed) == MISSED
    on_path = tuple(np.argwhere(target & prediction)[1])
    assert pixel(on_path) == PATH
    assert len({pixel((0, 0)), pixel(wrong), pixel(on_path), pixel(missed)}) == 4
    only_target = to_rgb(maze.open, maze.start, maze.goal, target=target)
    assert tuple(only_target[:, missed[0], missed[1]]) == PATH

    image = render_png(maze.open, maze.start, maze.goal, prediction, target, scale=5)
    assert image.mode == "RGB"
    image.save(tmp_path / "maze.png")
    assert (np.asarray(Image.open(tmp_path / "maze.png")) == np.asarray(image)).all()


def colours(pixels: np.ndarray) -> set[tuple[int, ...]]:
    return {tuple(int(v) for v in c) for c in pixels.reshape(-1, 3)}


@pytest.mark.parametrize("marks", ["both", "target", "none"])
def test_render_png_has_a_legend_of_the_colours_it_uses(marks: str) -> None:
    maze = sample_maze(9, 2)
    target = shortest_paths(maze.open, maze.start, maze.goal)
    prediction = {"both": target, "target": None, "none": None}[marks]
    target = None if marks == "none" else target
    image = np.asarray(render_png(maze.open, maze.start, maze.goal, prediction, target, scale=8))
    # The maze (19 x 19 sites at 8 pixels) on top, centred, then the legend strip under it.
    rgb = to_rgb(maze.open, maze.start, maze.goal, prediction, target).transpose(1, 2, 0)
    left = (image.shape[1] - 152) // 2
    assert (image[:152, left : left + 152] == rgb.repeat(8, axis=0).repeat(8, axis=1)).all()
    assert image.shape[0] >= 152 + 2 * 12  # at least one row of 12-pixel swatches and names
    legend = colours(image[152:])
    compared = {PATH, EXTRA, MISSED}
    expected = {"both": compared, "target": {PATH}, "none": set()}[marks]
    assert {WALL, OPEN, START, GOAL} | expected <= legend
    assert not (compared - expected) & legend  # no colour the picture does not use


# -----------------------------------------------------------------------------
# MazeDataModule


def small(**kwargs: object) -> MazeDataModule:
    args = dict(train_size=40, val_size=10, test_size=6, test_cells=[3, 5], batch_size=4)
    return MazeDataModule(**(args | kwargs))


def test_datamodule_batches() -> None:
    dm = small(train_cells=4, val_cells=5, predict_cells=6, predict_size=3)
    assert dm.test_names == ["7x7", "11x11"] and dm.predict_names == ["13x13"]
    for stage in ("fit", "test", "predict"):
        dm.setup(stage)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (4, 3, 9, 9) and batch["target"].shape == (4, 9, 9)
    assert batch["input"].dtype == batch["target"].dtype == torch.float32
    assert next(iter(dm.val_dataloader()))["input"].shape == (4, 3, 11, 11)
    loaders = dm.test_dataloader()
    assert [next(iter(dl))["target"].shape[-1] for dl in loaders] == [7, 11]
    assert [len(dl.dataset) for dl in loaders] == [6, 6]
    (predict,) = dm.predict_dataloader()
    assert [len(b["input"]) for b in predict] == [3]


def test_datamodule_is_deterministic() -> None:
    def first_batch(seed: int) -> dict[str, torch.Tensor]:
        dm = small(seed=seed)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert not torch.equal(a["input"], c["input"])
    dm = small()
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)  # as Lightning does before every epoch
        epochs.append(next(iter(loader))["input"])
    assert not torch.equal(*epochs)  # reshuffled every epoch


def test_datamodule_workers_see_the_same_data() -> None:
    dm, dm2 = small(), small(num_workers=2)
    dm.setup("validate")
    dm2.setup("validate")
    for a, b in zip(dm.val_dataloader(), dm2.val_dataloader(), strict=True):
        assert torch.equal(a["input"], b["input"])


def test_datamodule_cache(tmp_path: Path) -> None:
    dm = small(cache_dir=str(tmp_path))
    dm.prepare_data()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 5  # train, val, two test sizes, predict
    assert "mazes-v1-test-dfs-c5-n6-s0.npz" in files
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    cached, lazy = small(cache_dir=str(tmp_path)), small()
    for d in (cached, lazy):
        d.prepare_data()
        d.setup("test")
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps  # reused
    for a, b in zip(cached.test_dataloader(), lazy.test_dataloader(), strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x["input"], y["input"]) and torch.equal(x["target"], y["target"])


def test_datamodule_files(tmp_path: Path) -> None:
    write_mazes_text(tmp_path / "small.txt", [sample_maze(3, s) for s in range(5)])
    write_mazes_npz(tmp_path / "big.npz", [sample_maze(8, s) for s in range(2)])
    files = [str(tmp_path / "small.txt"), str(tmp_path / "big.npz")]
    dm = small(test_cells=[4], test_files=files, predict_files=files[::-1])
    assert dm.test_names == ["9x9", "small", "big"] and dm.predict_names == ["big", "small"]
    dm.setup("test")
    dm.setup("predict")
    sizes = [[tuple(b["target"].shape) for b in dl] for dl in dm.test_dataloader()]
    assert sizes == [[(4, 9, 9), (2, 9, 9)], [(4, 7, 7), (1, 7, 7)], [(2, 17, 17)]]
    batch = next(iter(dm.predict_dataloader()[1]))
    for x, y in zip(batch["input"], batch["target"], strict=True):
        maze = decode(x)
        assert torch.equal(y, torch.from_numpy(shortest_paths(maze.open, maze.start, maze.goal)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_cells": 1}, "train_cells must be >= 2"),
        ({"test_cells": [4, 0]}, r"test_cells\[1\] must be >= 2"),
        ({"val_size": 0}, "val_size must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"algorithm": "prim"}, "algorithm must be one of"),
        ({"loops": 1.2}, r"loops must be a fraction in \[0, 1\]"),
        ({"test_cells": []}, "nothing to test"),
        ({"test_cells": [3, 3]}, "distinct names"),
    ],
)
def test_datamodule_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small(**kwargs)


def test_datamodule_cli_arguments() -> None:
    """LightningCLI builds its arguments and help from the signature and docstring."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(MazeDataModule, "data")
    args = parser.parse_args(["--data.test_cells=[5, 9]", "--data.algorithm=wilson"])
    assert args.data.test_cells == [5, 9] and args.data.algorithm == "wilson"
    assert "cells per side of each generated test set" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--data.algorithm=prim"])


# -----------------------------------------------------------------------------
# training order and resuming


def training_order(dm: MazeDataModule, epoch: int = 0) -> list[int]:
    """The training set indices of an epoch, as the sampler yields them."""
    sampler = dm.train_dataloader().sampler
    sampler.set_epoch(epoch)
    return list(sampler)


def fit_ready(**kwargs: object) -> MazeDataModule:
    dm = small(**kwargs)
    dm.setup("fit")
    return dm


def test_training_order_is_a_seeded_shuffle_per_epoch() -> None:
    dm = fit_ready(train_size=10)
    epochs = [training_order(dm, epoch) for epoch in range(3)]
    for order in epochs:
        assert sorted(order) == list(range(10))  # every maze once
    assert len({tuple(order) for order in epochs}) == 3  # reshuffled every epoch
    assert training_order(fit_ready(train_size=10), 2) == epochs[2]  # a function of the epoch
    assert training_order(fit_ready(train_size=10, seed=1)) != epochs[0]


def test_ranks_take_disjoint_strided_shares() -> None:
    single = training_order(fit_ready(train_size=11))
    shares = []
    for rank in range(2):
        dm = fit_ready(train_size=11)
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        shares.append(training_order(dm))
    assert len(shares[0]) == len(shares[1]) == 5  # equal, so DDP ranks stay in step
    assert shares[0] == single[0:10:2]
    assert shares[1] == single[1:10:2]


def test_state_dict_without_trainer_resumes_the_shuffle() -> None:
    dm = fit_ready(train_size=10)
    assert dm.state_dict() == {"epoch": 0, "samples": 0}
    resumed = fit_ready(train_size=10)
    resumed.load_state_dict({"epoch": 1, "samples": 4})
    assert resumed.state_dict() == {"epoch": 1, "samples": 4}
    assert training_order(resumed, 1) == training_order(dm, 1)[4:]
    assert training_order(resumed, 2) == training_order(dm, 2)  # later epochs are whole
    assert len(resumed.train_dataloader()) == len(dm.train_dataloader())  # epoch length kept


class Recorder(L.LightningModule):
    """One weight trained on the mazes; records the batches it trains on."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.batches: list[torch.Tensor] = []

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.batches.append(batch["input"].clone())
        return (self.weight * batch["target"]).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_mazes(
    tmp_path: Path, steps: int, save_at: int | None = None, ckpt_path: str | None = None
) -> list[torch.Tensor]:
    """The batches of a `steps`-step run; with save_at, it checkpoints after that step."""
    # 10 mazes in batches of 4: 3 batches per epoch, the last one short.
    return fit_recording(
        Recorder(), small(train_size=10), tmp_path, steps, save_at, ckpt_path=ckpt_path
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> list[torch.Tensor]:
    return fit_mazes(tmp_path_factory.mktemp("uninterrupted"), 10)


# Lightning's advice to use more workers; its warning on resuming mid-epoch from a dataloader
# without state_dict (the datamodule holds that state); the resumed run's checkpoints joining the
# first run's; the recorder having no validation_step.
@pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning")
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")
@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader` but have no `validation_step`")
@pytest.mark.parametrize(
    "steps", [2, 3, 4], ids=["mid-epoch-0-across", "end-of-epoch-0", "mid-epoch-1-across"]
)
def test_resumed_run_sees_the_same_batches(
    tmp_path: Path, uninterrupted: list[torch.Tensor], steps: int
) -> None:
    first = fit_mazes(tmp_path, steps, steps)
    ckpt = tmp_path / "ckpt" / f"step={steps}.ckpt"
    resumed = fit_mazes(tmp_path, 2 * steps, steps, ckpt_path=str(ckpt))
    state = torch.load(ckpt, weights_only=False)["MazeDataModule"]
    assert (state["epoch"], state["samples"]) == (steps // 3, steps % 3 * 4)  # 3 batches an epoch
    assert len(first) == len(resumed) == steps
    for seen, expected in zip(first + resumed, uninterrupted, strict=False):
        assert torch.equal(seen, expected)
