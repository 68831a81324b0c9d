"""SudokuDataModule: generated puzzles for fit/validate/test/predict, plus puzzle files.

A thin layer over ``datasets.sudoku``: generated sets are seeded (identical on every rank and
worker) and cached with ``load_or_generate`` when ``cache_dir`` is set. Each run generates only
the sets it uses: fit the training and validation sets, validate the latter, test the test sets,
predict the prediction set (none when predicting files). Training puzzles are
augmented on the fly (digit relabelling by default; the geometric transforms, which teach the
symmetry group of rows, columns and boxes, are off unless asked for). Each draw of a puzzle gets
its own transform, a pure function of (seed, epoch, position in the epoch), so the data order
and the transforms of a resumed run are those of an uninterrupted one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets.files import require_file
from ..datasets.sudoku import (
    Kind,
    SudokuDataset,
    augment,
    generate,
    load_or_generate,
    read_puzzles,
)
from ..errors import ConfigError
from .sampling import PermutationSampler, ResumableDataModule, require_at_least

_SPEC = re.compile(r"^(\d+)(?:-(\d+))?(?::(minimal|hard))?$")
# Seed offsets of the generated splits (a test set of a given spec is the same in any list).
_SPLIT_SEED = {"train": 0, "val": 1000, "test": 2000, "predict": 3000}
# Seed offset between the training sets of ``train_sets`` (clear of the splits' offsets).
_SET_SEED = 10_000
# What the puzzles of a split are called in progress messages.
_SPLIT_LABEL = {"train": "training", "val": "validation", "test": "test", "predict": "prediction"}
# The generated splits each stage uses: a stage prepares and sets up only those.
_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
}


def parse_set(spec: str | int) -> tuple[tuple[int, int], Kind]:
    """``"36"``, ``"30-34"``, ``"22-25:minimal"`` or ``"22-25:hard"`` -> ``((low, high), kind)``:
    the inclusive range of givens and what the puzzles are (``generation.Kind``: minimal, no
    given can be removed; hard, minimal and singles alone do not solve them)."""
    match = _SPEC.match(str(spec).strip())
    if match is None:
        raise ConfigError(
            f"bad Sudoku set {spec!r}: expected GIVENS, LOW-HIGH, LOW-HIGH:minimal or "
            "LOW-HIGH:hard, e.g. '36', '30-34', '22-25:minimal' or '22-25:hard'"
        )
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 17 <= low <= high <= 81:
        raise ConfigError(f"bad Sudoku set {spec!r}: need 17 <= low <= high <= 81 givens")
    return (low, high), match.group(3) or "any"


def set_name(spec: str | int) -> str:
    """The name a set's metrics are logged under: ``"22-25:minimal"`` -> ``"22-25_minimal"``."""
    return str(spec).strip().replace(":", "_")


class AugmentedSudoku(Dataset):
    """Puzzles and solutions with a random validity-preserving transform per draw.

    Indexed by keys ``stream * len(self) + index`` (``AugmentationSampler`` yields them): item
    ``index``, transformed with a generator seeded by ``(seed, stream)``.

    Args:
        puzzles, solutions: ``(N, 81)`` boards.
        seed: seed of the transforms.
        first_epoch: ``(N,)`` the epoch from which each puzzle is drawn (a curriculum; ``None``:
            every puzzle from the start).
        transforms: keyword switches of ``datasets.sudoku.augment`` (``relabel``, ...).
    """

    def __init__(
        self,
        puzzles,
        solutions,
        seed: int = 0,
        first_epoch: np.ndarray | None = None,
        **transforms: bool,
    ) -> None:
        self.data = SudokuDataset(puzzles, solutions)
        self.seed = seed
        self.first_epoch = first_epoch
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.data)

    def pool(self, epoch: int) -> np.ndarray | None:
        """Indices of the puzzles drawn in ``epoch`` (``None``: all of them)."""
        if self.first_epoch is None or (self.first_epoch <= epoch).all():
            return None
        return np.flatnonzero(self.first_epoch <= epoch)

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        stream, index = divmod(int(key), len(self.data))
        item = self.data[index]
        if not any(self.transforms.values()):
            return item
        state = np.random.SeedSequence([self.seed, stream]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        puzzle, solution = augment(
            item["input"][None], item["target"][None], generator, **self.transforms
        )
        return {"input": puzzle[0], "target": solution[0]}


class AugmentationSampler(PermutationSampler):
    """A ``PermutationSampler`` whose items also name their transform: it yields
    ``(epoch * total_size + position) * len(dataset) + index``, so every draw of a puzzle is
    transformed differently, and a resumed run transforms exactly as an uninterrupted one. In an
    epoch whose ``AugmentedSudoku.pool`` leaves puzzles out (a curriculum), the epoch keeps its
    length: a permutation of the positions maps onto the pool, each pooled puzzle drawn equally
    often (to one)."""

    def draw_epoch(self, rng: np.random.Generator, epoch: int) -> np.ndarray:
        order = self.draw(rng)
        pool = self.dataset.pool(epoch)
        return order if pool is None else pool[order % len(pool)]

    def __iter__(self) -> Iterator[int]:
        # The parent's loop, with the key in place of the index.
        epoch, first = self.start()
        n, size = len(self.dataset), self.block_size
        block_index, block = -1, np.empty(0, dtype=np.int64)
        for i in range(first + self.rank, self.total_size, self.num_replicas):
            if i // size != block_index:
                block_index = i // size
                rng = np.random.default_rng((self.seed, epoch, block_index))
                block = self.draw_epoch(rng, epoch)
            yield (epoch * self.total_size + i) * n + int(block[i % size])


class SudokuDataModule(ResumableDataModule):
    """Generated Sudoku puzzles (unique solutions) and puzzle files.

    Batches are ``{"input": (B, 81), "target": (B, 81)}`` long: puzzles (0 = blank) and their
    solutions. A set is written ``"36"`` (36 givens), ``"30-34"`` (a range),
    ``"22-25:minimal"`` (minimal puzzles) or ``"22-25:hard"`` (minimal puzzles that need a
    guess of the exact solver, ``datasets.sudoku.guesses``); its metrics are logged as
    ``test/<name>/...`` with the ``:`` written ``_`` (``test_names``).

    Args:
        train_size: training puzzles; an epoch draws each once.
        train_givens: inclusive range of givens of the training puzzles (when ``train_sets``
            is unset).
        train_sets: the training puzzles as generated sets, written as ``test_sets`` (e.g.
            ``["22-44", "22-25:minimal", "22-25:hard"]``), ``train_size`` split evenly among
            them and shuffled together: hard puzzles in training without a hand-made rule.
        train_from_epoch: a curriculum over ``train_sets``: the epoch from which each set is
            drawn (e.g. ``[0, 2, 4]``: minimal puzzles from the third epoch, hard ones from the
            fifth; at least one 0). An epoch keeps its length, drawing its sets' puzzles more
            often. ``None``: every set from the start.
        val_size: validation puzzles.
        val_givens: inclusive range of givens of the validation puzzles.
        test_sets: generated test sets, one loader each, by difficulty (a plain number of
            givens may be written as an int).
        test_size: puzzles per generated test set.
        test_files: puzzle files (``read_puzzles``: CSV or text) tested after the generated
            sets, one loader each, named by their stem.
        predict_files: files to predict; if unset, ``predict_size`` puzzles of
            ``predict_set`` are generated.
        predict_set: the generated prediction set.
        predict_size: puzzles in the generated prediction set.
        batch_size: puzzles per batch.
        relabel: permute the digits of every training draw.
        permute_rows: permute rows within bands (injects the symmetry group: off for zero
            structural injection); likewise the four switches below.
        permute_bands: permute the bands of three rows.
        permute_columns: permute columns within stacks.
        permute_stacks: permute the stacks of three columns.
        transpose: transpose half of the draws.
        seed: seed of the generated sets, the shuffle and the transforms.
        num_workers: DataLoader worker processes.
        cache_dir: if set, generated sets are stored here as ``.npz`` and reused.
        generate_workers: processes generating the puzzles: by default every usable CPU for a
            set that takes more than a few seconds; 0 or 1 for this process only. The puzzles
            do not depend on it.
    """

    def __init__(
        self,
        train_size: int = 20000,
        train_givens: tuple[int, int] = (22, 44),
        train_sets: list[str | int] | None = None,
        train_from_epoch: list[int] | None = None,
        val_size: int = 500,
        val_givens: tuple[int, int] = (22, 44),
        test_sets: list[str | int] = ("36", "30", "22-25:minimal"),
        test_size: int = 1000,
        test_files: list[str] | None = None,
        predict_files: list[str] | None = None,
        predict_set: str | int = "30",
        predict_size: int = 16,
        batch_size: int = 64,
        relabel: bool = True,
        permute_rows: bool = False,
        permute_bands: bool = False,
        permute_columns: bool = False,
        permute_stacks: bool = False,
        transpose: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | None = None,
        generate_workers: int | None = None,
    ) -> None:
        super().__init__()
        require_at_least(
            1,
            train_size=train_size,
            val_size=val_size,
            test_size=test_size,
            predict_size=predict_size,
            batch_size=batch_size,
        )
        require_at_least(0, num_workers=num_workers, generate_workers=generate_workers)
        for name, givens in (("train_givens", train_givens), ("val_givens", val_givens)):
            low, high = givens
            if not 17 <= low <= high <= 81:
                raise ConfigError(f"{name}={tuple(givens)}: need 17 <= low <= high <= 81")
        if train_sets is not None and not 1 <= len(train_sets) <= train_size:
            raise ConfigError(f"train_sets needs 1 to train_size={train_size} sets")
        if train_from_epoch is not None and (
            len(train_from_epoch) != len(train_sets or []) or min(train_from_epoch) != 0
        ):
            raise ConfigError(
                f"train_from_epoch={train_from_epoch}: needs one epoch >= 0 per train_sets "
                f"entry ({train_sets}), at least one of them 0"
            )
        for spec in [*(train_sets or []), *test_sets, predict_set]:
            parse_set(spec)
        for file in [*(test_files or []), *(predict_files or [])]:
            require_file(file, "Sudoku file")
        self.save_hyperparameters()
        self.transforms = {
            "relabel": relabel,
            "permute_rows": permute_rows,
            "permute_bands": permute_bands,
            "permute_columns": permute_columns,
            "permute_stacks": permute_stacks,
            "transpose": transpose,
        }
        self.test_names = [set_name(s) for s in test_sets]
        self.test_names += [Path(f).stem for f in test_files or []]
        if not self.test_names:
            raise ConfigError("test_sets and test_files are both empty; nothing to test")
        if len(set(self.test_names)) != len(self.test_names):
            raise ConfigError(f"test sets need distinct names, got {self.test_names}")
        if predict_files:
            self.predict_names = [Path(f).stem for f in predict_files]
        else:
            self.predict_names = [set_name(predict_set)]

    def _train_splits(self) -> list[tuple[str, tuple[int, int], Kind, int, int]]:
        hp = self.hparams
        if hp.train_sets is None:
            return [("train", tuple(hp.train_givens), "any", hp.train_size, 0)]
        sizes = np.diff(np.linspace(0, hp.train_size, len(hp.train_sets) + 1).round().astype(int))
        # Each set its own seed: sets drawn with one seed would share their solution grids.
        return [
            ("train", *parse_set(spec), int(size), i * _SET_SEED)
            for i, (spec, size) in enumerate(zip(hp.train_sets, sizes, strict=True))
        ]

    def _generated_splits(
        self, stage: str | None = None
    ) -> list[tuple[str, tuple[int, int], Kind, int, int]]:
        """(split, givens, kind, size, seed offset) of the generated sets that ``stage`` uses
        (``"fit"``, ``"validate"``, ``"test"`` or ``"predict"``), or of all of them."""
        hp = self.hparams
        splits = [*self._train_splits(), ("val", tuple(hp.val_givens), "any", hp.val_size, 0)]
        splits += [("test", *parse_set(s), hp.test_size, 0) for s in hp.test_sets]
        if not hp.predict_files:
            splits.append(("predict", *parse_set(hp.predict_set), hp.predict_size, 0))
        if stage is None:
            return splits
        return [s for s in splits if s[0] in _STAGE_SPLITS[stage]]

    def _arrays(
        self, split: str, givens: tuple[int, int], kind: Kind, size: int, offset: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        hp = self.hparams
        seed = hp.seed + _SPLIT_SEED[split] + offset
        how = {"kind": kind, "workers": hp.generate_workers, "label": _SPLIT_LABEL[split]}
        if hp.cache_dir is None:
            return generate(size, givens, seed, **how)
        return load_or_generate(hp.cache_dir, size, givens, seed, **how)

    def prepare_data(self) -> None:
        # Lightning runs this in one process per node, so each cache is generated only once,
        # and for each run (fit, test, ...) separately: only the sets that run uses, so that
        # predicting a file generates nothing. Called without a trainer, it prepares them all.
        if self.hparams.cache_dir is None:
            return
        fn = self.trainer.state.fn if self.trainer is not None else None
        for split in self._generated_splits(fn.value if fn is not None else None):
            self._arrays(*split)

    def _generated(self, split: str) -> list[Dataset]:
        return [SudokuDataset(*self._arrays(*s)) for s in self._generated_splits() if s[0] == split]

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit":
            splits = self._train_splits()
            sets = [self._arrays(*split) for split in splits]
            puzzles, solutions = (np.concatenate(arrays) for arrays in zip(*sets, strict=True))
            first_epoch = None
            if hp.train_from_epoch is not None:
                sizes = [split[3] for split in splits]
                first_epoch = np.repeat(hp.train_from_epoch, sizes)
            self.train_set = AugmentedSudoku(
                puzzles, solutions, hp.seed, first_epoch, **self.transforms
            )
        if stage in ("fit", "validate"):
            self.val_set = self._generated("val")[0]
        if stage == "test":
            self.test_sets = self._generated("test")
            self.test_sets += [SudokuDataset(*read_puzzles(f)) for f in hp.test_files or []]
        if stage == "predict":
            if hp.predict_files:
                self.predict_sets = [SudokuDataset(*read_puzzles(f)) for f in hp.predict_files]
            else:
                self.predict_sets = self._generated("predict")

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.train_sampler(AugmentationSampler, self.train_set))
