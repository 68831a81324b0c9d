"""MazeDataModule: generated perfect mazes for fit/validate/test/predict, plus maze files.

Every generated example depends only on (seed, split, cells, index): its numpy SeedSequence is
built from those four numbers, so all DDP ranks, dataloader workers and reruns see the same
mazes whatever the global torch/numpy seeds are. The training shuffle depends only on (seed,
epoch), and the position in it is checkpointed, so a resumed run sees the same batches as an
uninterrupted one.
"""

import os
import tempfile
import zlib
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lit_metriplector.datamodules.mazes import (
    Algorithm,
    encode,
    make_example,
    read_mazes,
    shortest_path,
)
from lit_metriplector.datamodules.sampling import PermutationSampler, ResumableDataModule

# Bump when generation changes, so that stale cache files are not reused.
GENERATOR_VERSION = 1


def _item(x: np.ndarray, y: np.ndarray) -> dict[str, torch.Tensor]:
    return {"input": torch.from_numpy(x), "target": torch.from_numpy(y)}


class GeneratedMazes(Dataset):
    """`size` mazes made on access from (seed, split, cells, index)."""

    def __init__(self, cells: int, size: int, algorithm: Algorithm, seed: int, split: str) -> None:
        self.cells, self.size, self.algorithm = cells, size, algorithm
        self.entropy = [seed, zlib.crc32(split.encode())]  # crc32: stable across processes

    def __len__(self) -> int:
        return self.size

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        seed = np.random.SeedSequence([*self.entropy, self.cells, index])
        return make_example(self.cells, seed, self.algorithm)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return _item(*self.example(index))


class StoredMazes(Dataset):
    """Examples held in memory: inputs (N, 3, H, W) and targets (N, H, W), any 0/1 dtype."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x, y = self.inputs[index], self.targets[index]
        return _item(x.astype(np.float32), y.astype(np.float32))


def _file_dataset(path: str) -> StoredMazes:
    """A maze file's mazes with shortest-path targets (marks in the file are not used)."""
    mazes = read_mazes(path)
    inputs = np.stack([encode(m.open, m.start, m.goal) for m in mazes])
    targets = np.stack([shortest_path(m.open, m.start, m.goal) for m in mazes])
    return StoredMazes(inputs, targets)


class MazeDataModule(ResumableDataModule):
    """Shortest paths through perfect mazes, generated deterministically or read from files.

    Batches are {"input": (B, 3, G, G), "target": (B, G, G)} float32 (see mazes.encode); a maze
    of c cells has G = 2c + 1 sites per side. Test and predict loaders come one per maze
    size or file (`test_names`, `predict_names`), since their batches cannot mix sizes.

    Args:
        train_cells: Cells per side of the training mazes.
        val_cells: Cells per side of the validation mazes.
        test_cells: Cells per side of each generated test set, one test loader each.
        train_size: Number of training mazes; an epoch shuffles them all (cut to a multiple of
            the number of devices, so that every device takes as many).
        val_size: Number of validation mazes.
        test_size: Number of mazes in each generated test set.
        batch_size: Mazes per batch.
        algorithm: Maze generator: "dfs" (long corridors), "kruskal" or "wilson" (uniform).
        seed: Seed of all generated mazes and of the training shuffle.
        num_workers: DataLoader worker processes.
        cache_dir: If set, generated splits are stored here as .npz and reused.
        test_files: Maze files (.txt or .npz) tested after the generated sizes, one loader each.
        predict_files: Maze files to predict, one loader each; if unset, mazes are generated.
        predict_cells: Cells per side of the generated prediction mazes.
        predict_size: Number of generated prediction mazes.
    """

    def __init__(
        self,
        train_cells: int = 7,
        val_cells: int = 7,
        test_cells: list[int] = (19,),
        train_size: int = 10000,
        val_size: int = 256,
        test_size: int = 1000,
        batch_size: int = 32,
        algorithm: Algorithm = "dfs",
        seed: int = 0,
        num_workers: int = 0,
        cache_dir: str | None = None,
        test_files: list[str] | None = None,
        predict_files: list[str] | None = None,
        predict_cells: int = 19,
        predict_size: int = 16,
    ) -> None:
        super().__init__()
        cells = {"train_cells": train_cells, "val_cells": val_cells, "predict_cells": predict_cells}
        cells.update({f"test_cells[{i}]": c for i, c in enumerate(test_cells)})
        for name, value in cells.items():
            if value < 2:  # start and goal are two distinct cells
                raise ValueError(f"{name} must be >= 2, got {value}")
        counts = {
            "train_size": train_size,
            "val_size": val_size,
            "test_size": test_size,
            "predict_size": predict_size,
            "batch_size": batch_size,
        }
        for name, value in counts.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if algorithm not in get_args(Algorithm):
            raise ValueError(f"algorithm must be one of {get_args(Algorithm)}, got {algorithm!r}")
        # Check files now rather than after a long fit; they are parsed in setup.
        for file in [*(test_files or []), *(predict_files or [])]:
            if not Path(file).is_file():
                raise FileNotFoundError(f"maze file not found: {file}")
        self.save_hyperparameters()
        self.test_names = [f"{2 * c + 1}x{2 * c + 1}" for c in test_cells]
        self.test_names += [Path(f).stem for f in test_files or []]
        if not self.test_names:
            raise ValueError("test_cells and test_files are both empty; nothing to test")
        if len(set(self.test_names)) != len(self.test_names):
            raise ValueError(f"test sets need distinct names, got {self.test_names}")
        if predict_files:
            self.predict_names = [Path(f).stem for f in predict_files]
        else:
            self.predict_names = [f"{2 * predict_cells + 1}x{2 * predict_cells + 1}"]

    def _generated_splits(self) -> list[tuple[str, int, int]]:
        """(split, cells, size) of every generated dataset."""
        hp = self.hparams
        splits = [("train", hp.train_cells, hp.train_size), ("val", hp.val_cells, hp.val_size)]
        splits += [("test", c, hp.test_size) for c in hp.test_cells]
        if not hp.predict_files:
            splits.append(("predict", hp.predict_cells, hp.predict_size))
        return splits

    def _cache_file(self, split: str, cells: int, size: int) -> Path:
        """The cache file of a split, generated first if missing; named by all that shapes it."""
        hp = self.hparams
        name = f"mazes-v{GENERATOR_VERSION}-{split}-{hp.algorithm}-c{cells}-n{size}-s{hp.seed}.npz"
        file = Path(hp.cache_dir) / name
        if not file.exists():
            mazes = GeneratedMazes(cells, size, hp.algorithm, hp.seed, split)
            inputs, targets = zip(*(mazes.example(i) for i in range(size)), strict=True)
            file.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a concurrent reader never sees half a file.
            fd, tmp = tempfile.mkstemp(suffix=".npz", dir=file.parent)
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(
                    f,
                    inputs=np.stack(inputs).astype(bool),
                    targets=np.stack(targets).astype(bool),
                )
            os.replace(tmp, file)
        return file

    def _generated(self, split: str, cells: int, size: int) -> Dataset:
        hp = self.hparams
        if hp.cache_dir is None:
            return GeneratedMazes(cells, size, hp.algorithm, hp.seed, split)
        with np.load(self._cache_file(split, cells, size)) as f:
            return StoredMazes(f["inputs"], f["targets"])

    def prepare_data(self) -> None:
        # Lightning runs this in one process per node, so the cache is generated only once.
        if self.hparams.cache_dir is not None:
            for split in self._generated_splits():
                self._cache_file(*split)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit":
            self.train_set = self._generated("train", hp.train_cells, hp.train_size)
        if stage in ("fit", "validate"):
            self.val_set = self._generated("val", hp.val_cells, hp.val_size)
        if stage == "test":
            self.test_sets = [self._generated("test", c, hp.test_size) for c in hp.test_cells]
            self.test_sets += [_file_dataset(f) for f in hp.test_files or []]
        if stage == "predict":
            if hp.predict_files:
                self.predict_sets = [_file_dataset(f) for f in hp.predict_files]
            else:
                self.predict_sets = [self._generated("predict", hp.predict_cells, hp.predict_size)]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.train_sampler(PermutationSampler, self.train_set))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d) for d in self.test_sets]

    def predict_dataloader(self) -> list[DataLoader]:
        return [self._loader(d) for d in self.predict_sets]
