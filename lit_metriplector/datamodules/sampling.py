"""Resumable training samplers and the DataModule state that resumes them.

The global order of training samples in an epoch is a pure function of (seed, epoch), so every
rank, every worker and every rerun agrees on it, and a run resumed from a checkpoint skips the
samples it already consumed and continues exactly where the interrupted run stopped.
"""

from collections.abc import Iterator

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

# Random indices are drawn this many at a time, from a generator seeded by the block's index.
INDEX_BLOCK = 4096


class ResumableSampler(DistributedSampler):
    """Global sample i of an epoch depends only on (seed, epoch, i); resumable mid-epoch.

    The global order is cut into blocks of `block_size` samples; block b of epoch e is drawn by
    `draw` from a numpy generator seeded with (seed, e, b), so any position is reached without
    drawing the samples before it. Rank r of world_size takes the global samples r,
    r + world_size, r + 2 * world_size, ... Subclassing DistributedSampler tells Lightning that
    the sampler already shards by rank, so Lightning does not wrap it in a second one.

    Args:
        dataset: The map-style dataset whose indices are sampled.
        seed: Seed of the order.
        rank: This process's rank.
        world_size: Number of ranks.
        resume: (epoch, global samples already consumed in that epoch) to skip.
        samples_per_epoch: Global samples per epoch, cut to a multiple of world_size so that
            every rank gets as many and DDP ranks run the same number of steps; default
            len(dataset).
    """

    block_size: int

    def __init__(
        self,
        dataset: Dataset,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        resume: tuple[int, int] = (0, 0),
        samples_per_epoch: int | None = None,
    ) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, seed=seed)
        samples = len(dataset) if samples_per_epoch is None else samples_per_epoch
        self.num_samples = samples // world_size
        self.total_size = self.num_samples * world_size
        self.resume = resume
        # The sampler may be iterated before Lightning's first set_epoch call.
        self.epoch = resume[0]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One block of block_size dataset indices."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        epoch, size = self.epoch, self.block_size
        resume_epoch, consumed = self.resume
        first = consumed if epoch == resume_epoch else 0
        block_index, block = -1, np.empty(0, dtype=np.int64)
        for i in range(first + self.rank, self.total_size, self.num_replicas):
            if i // size != block_index:
                block_index = i // size
                block = self.draw(np.random.default_rng((self.seed, epoch, block_index)))
            yield int(block[i % size])


class ReplacementSampler(ResumableSampler):
    """Uniformly random indices, with replacement: for datasets too large to permute, such as
    the windows at every offset of a corpus."""

    block_size = INDEX_BLOCK

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(len(self.dataset), size=self.block_size)


class PermutationSampler(ResumableSampler):
    """A shuffle without replacement: each block is a fresh permutation of the dataset, so an
    epoch of len(dataset) samples sees every item once."""

    @property
    def block_size(self) -> int:
        return len(self.dataset)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self.block_size)


class ResumableDataModule(L.LightningDataModule):
    """A DataModule whose training position is checkpointed, so that a resumed run continues
    the exact data order of an uninterrupted one.

    Subclasses have `seed`, `batch_size` and `num_workers` hyperparameters, build their
    training sampler with `train_sampler` and their loaders with `_loader`.
    """

    def __init__(self) -> None:
        super().__init__()
        # (epoch, global samples consumed in it) where training resumes; see state_dict().
        self.resume = (0, 0)

    def train_sampler(
        self,
        sampler: type[ResumableSampler],
        dataset: Dataset,
        samples_per_epoch: int | None = None,
    ) -> ResumableSampler:
        """A sampler of the given order for this rank, starting where training resumes."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return sampler(dataset, self.hparams.seed, rank, world_size, self.resume, samples_per_epoch)

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def state_dict(self) -> dict[str, int]:
        """Where training resumes: an epoch and the global samples consumed in it.

        Lightning calls this when it saves a checkpoint. The position comes from the trainer's
        count of batches trained on, not from the sampler, which the DataLoader's prefetching
        (and its workers) run ahead of training.
        """
        trainer = self.trainer
        if trainer is None:
            epoch, samples = self.resume
        else:
            epoch = trainer.current_epoch
            batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
            if batches >= trainer.num_training_batches:  # the epoch is over: resume at the next
                epoch, batches = epoch + 1, 0
            samples = batches * self.hparams.batch_size * trainer.world_size
        return {"epoch": epoch, "samples": samples}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        # Lightning calls this before train_dataloader(), whose sampler starts from here.
        self.resume = (state_dict["epoch"], state_dict["samples"])
