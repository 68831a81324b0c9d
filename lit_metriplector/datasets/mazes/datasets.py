"""Torch datasets of mazes: generated on access, cached on disk, or read from maze files.

Every generated example depends only on (seed, split, cells, index): its numpy SeedSequence is
built from those four numbers, so all DDP ranks, dataloader workers and reruns see the same
mazes whatever the global torch/numpy seeds are.
"""

import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..files import atomic_write
from .files import read_mazes
from .generation import Algorithm, encode, make_example, shortest_paths

# Bump when generation changes, so that stale cache files are not reused.
GENERATOR_VERSION = 1


def _item(x: np.ndarray, y: np.ndarray) -> dict[str, torch.Tensor]:
    return {"input": torch.from_numpy(x), "target": torch.from_numpy(y)}


class GeneratedMazes(Dataset):
    """``size`` mazes made on access from (seed, split, cells, index), with a fraction ``loops``
    of their interior walls knocked out."""

    def __init__(
        self, cells: int, size: int, algorithm: Algorithm, seed: int, split: str, loops: float = 0.0
    ) -> None:
        self.cells, self.size, self.algorithm, self.seed = cells, size, algorithm, seed
        self.split, self.loops = split, loops
        self.entropy = [seed, zlib.crc32(split.encode())]  # crc32: stable across processes

    def __len__(self) -> int:
        return self.size

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        seed = np.random.SeedSequence([*self.entropy, self.cells, index])
        return make_example(self.cells, seed, self.algorithm, self.loops)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return _item(*self.example(index))

    def cache_file(self, cache_dir: str | Path) -> Path:
        """The ``.npz`` holding these mazes in ``cache_dir``, written first if missing; its name
        holds everything that shapes them, so a changed setting never reuses a stale file."""
        name = (
            f"mazes-v{GENERATOR_VERSION}-{self.split}-{self.algorithm}-c{self.cells}"
            f"{f'-l{self.loops:g}' if self.loops else ''}-n{self.size}-s{self.seed}.npz"
        )
        file = Path(cache_dir) / name
        if not file.exists():
            inputs, targets = zip(*(self.example(i) for i in range(self.size)), strict=True)
            with atomic_write(file) as f:
                np.savez_compressed(
                    f, inputs=np.stack(inputs).astype(bool), targets=np.stack(targets).astype(bool)
                )
        return file


class StoredMazes(Dataset):
    """Examples held in memory: inputs (N, 3, H, W) and targets (N, H, W), any 0/1 dtype."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray) -> None:
        self.inputs, self.targets = inputs, targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x, y = self.inputs[index], self.targets[index]
        return _item(x.astype(np.float32), y.astype(np.float32))

    @classmethod
    def from_cache(cls, file: str | Path) -> "StoredMazes":
        """The mazes of a file written by ``GeneratedMazes.cache_file``."""
        with np.load(file) as f:
            return cls(f["inputs"], f["targets"])

    @classmethod
    def from_maze_file(cls, path: str | Path) -> "StoredMazes":
        """A maze file's mazes with shortest-path targets (marks in the file are not used)."""
        mazes = read_mazes(path)
        inputs = np.stack([encode(m.open, m.start, m.goal) for m in mazes])
        targets = np.stack([shortest_paths(m.open, m.start, m.goal) for m in mazes])
        return cls(inputs, targets)
