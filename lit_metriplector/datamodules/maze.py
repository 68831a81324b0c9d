"""MazeDataModule: generated mazes (perfect or with loops) for fit/validate/test/predict, plus maze
files.

Generated mazes are identical on every rank and worker (see ``datasets.mazes``). The training
shuffle depends only on (seed, epoch), and the position in it is checkpointed, so a resumed run
sees the same batches as an uninterrupted one.
"""

from pathlib import Path
from typing import get_args

from torch.utils.data import DataLoader, Dataset

from ..datasets.mazes import Algorithm, GeneratedMazes, StoredMazes, read_mazes
from ..errors import ConfigError
from .sampling import PermutationSampler, ResumableDataModule, require_at_least


class MazeDataModule(ResumableDataModule):
    """Shortest paths through mazes, generated deterministically or read from files.

    Batches are {"input": (B, 3, G, G), "target": (B, G, G)} float32 (see mazes.encode); a maze
    of c cells has G = 2c + 1 sites per side. Test and predict loaders come one per maze
    size or file (`test_names`, `predict_names`), since their batches cannot mix sizes.

    Args:
        train_cells: cells per side of the training mazes.
        val_cells: cells per side of the validation mazes.
        test_cells: cells per side of each generated test set, one test loader each.
        train_size: number of training mazes; an epoch shuffles them all (cut to a multiple of
            the number of devices, so that every device takes as many).
        val_size: number of validation mazes.
        test_size: number of mazes in each generated test set.
        batch_size: mazes per batch.
        algorithm: maze generator: "dfs" (long corridors), "kruskal" or "wilson" (uniform).
        loops: fraction of the interior walls knocked out after carving, in every generated
            split (0: perfect mazes). Targets mark every shortest path (``shortest_paths``).
        seed: seed of all generated mazes and of the training shuffle.
        num_workers: DataLoader worker processes.
        cache_dir: if set, generated splits are stored here as .npz and reused.
        test_files: maze files (.txt or .npz) tested after the generated sizes, one loader each.
        predict_files: maze files to predict, one loader each; if unset, mazes are generated.
        predict_cells: cells per side of the generated prediction mazes.
        predict_size: number of generated prediction mazes.
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
        loops: float = 0.0,
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
                raise ConfigError(f"{name} must be >= 2, got {value}")
        require_at_least(
            1,
            train_size=train_size,
            val_size=val_size,
            test_size=test_size,
            predict_size=predict_size,
            batch_size=batch_size,
        )
        require_at_least(0, num_workers=num_workers)
        if algorithm not in get_args(Algorithm):
            raise ConfigError(f"algorithm must be one of {get_args(Algorithm)}, got {algorithm!r}")
        if not 0.0 <= loops <= 1.0:
            raise ConfigError(f"loops must be a fraction in [0, 1], got {loops}")
        # Validate files now rather than after a long fit (setup reads them again).
        for file in [*(test_files or []), *(predict_files or [])]:
            read_mazes(file)
        self.save_hyperparameters()
        self.test_names = [f"{2 * c + 1}x{2 * c + 1}" for c in test_cells]
        self.test_names += [Path(f).stem for f in test_files or []]
        if not self.test_names:
            raise ConfigError("test_cells and test_files are both empty; nothing to test")
        if len(set(self.test_names)) != len(self.test_names):
            raise ConfigError(f"test sets need distinct names, got {self.test_names}")
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

    def _generated(self, split: str, cells: int, size: int) -> Dataset:
        hp = self.hparams
        mazes = GeneratedMazes(cells, size, hp.algorithm, hp.seed, split, hp.loops)
        if hp.cache_dir is None:
            return mazes
        return StoredMazes.from_cache(mazes.cache_file(hp.cache_dir))

    def prepare_data(self) -> None:
        # Lightning runs this in one process per node, so the cache is generated only once.
        hp = self.hparams
        if hp.cache_dir is not None:
            for split, cells, size in self._generated_splits():
                mazes = GeneratedMazes(cells, size, hp.algorithm, hp.seed, split, hp.loops)
                mazes.cache_file(hp.cache_dir)

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "fit":
            self.train_set = self._generated("train", hp.train_cells, hp.train_size)
        if stage in ("fit", "validate"):
            self.val_set = self._generated("val", hp.val_cells, hp.val_size)
        if stage == "test":
            self.test_sets = [self._generated("test", c, hp.test_size) for c in hp.test_cells]
            self.test_sets += [StoredMazes.from_maze_file(f) for f in hp.test_files or []]
        if stage == "predict":
            if hp.predict_files:
                self.predict_sets = [StoredMazes.from_maze_file(f) for f in hp.predict_files]
            else:
                self.predict_sets = [self._generated("predict", hp.predict_cells, hp.predict_size)]

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.train_sampler(PermutationSampler, self.train_set))
