"""Resumable training samplers and the DataModule state that resumes them.

The global order of training samples in an epoch is a pure function of (seed, epoch), so every
rank, every worker and every rerun agrees on it. During a fit, where each pass over the training
set starts is a function of the number of batches trained so far, which Lightning restores from
a checkpoint; the global random number generators are checkpointed too. A resumed run therefore
continues exactly where the interrupted run stopped, bit for bit.
"""

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..errors import ConfigError

# Random indices are drawn this many at a time, from a generator seeded by the block's index.
INDEX_BLOCK = 4096


def require_at_least(low: int, **values: int | None) -> None:
    """One clear error for the first setting below ``low`` (``None``: unset, allowed)."""
    for name, value in values.items():
        if value is not None and value < low:
            raise ConfigError(f"{name} must be >= {low}, got {value}")


class ResumableSampler(DistributedSampler):
    """Global sample i of an epoch depends only on (seed, epoch, i); resumable mid-epoch.

    The global order is cut into blocks of `block_size` samples; block b of epoch e is drawn by
    `draw` from a numpy generator seeded with (seed, e, b), so any position is reached without
    drawing the samples before it. Rank r of world_size takes the global samples r,
    r + world_size, r + 2 * world_size, ... Subclassing DistributedSampler tells Lightning that
    the sampler already shards by rank, so Lightning does not wrap it in a second one.

    Args:
        dataset: the map-style dataset whose indices are sampled.
        seed: seed of the order.
        rank: this process's rank.
        world_size: number of ranks.
        resume: (epoch, global samples already consumed in that epoch) to skip.
        samples_per_epoch: global samples per epoch, cut to a multiple of world_size so that
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
        position: Callable[[], tuple[int, int] | None] | None = None,
    ) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, seed=seed)
        samples = len(dataset) if samples_per_epoch is None else samples_per_epoch
        self.num_samples = samples // world_size
        self.total_size = self.num_samples * world_size
        self.resume = resume
        self.position = position
        # The sampler may be iterated before Lightning's first set_epoch call.
        self.epoch = resume[0]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One block of block_size dataset indices."""
        raise NotImplementedError

    def start(self) -> tuple[int, int]:
        """(epoch, global samples to skip) of a pass that begins now: from `position` if it
        knows, else the epoch of `set_epoch`, skipping the `resume` samples in that epoch."""
        where = self.position() if self.position is not None else None
        if where is not None:
            return where
        resume_epoch, consumed = self.resume
        return self.epoch, consumed if self.epoch == resume_epoch else 0

    def __iter__(self) -> Iterator[int]:
        epoch, first = self.start()
        size = self.block_size
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


def rng_states() -> dict[str, Any]:
    """The global random number generators of this process (torch, CUDA if in use, numpy,
    Python), as tensors and plain values, so that checkpoints load with weights_only=True."""
    # The legacy global generator, which user code may still draw from.
    name, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` returned (the CUDA state on the current device)."""
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"].cpu())
    name, keys, position, has_gauss, gauss = states["numpy"]
    keys = keys.cpu().numpy().astype(np.uint32)
    np.random.set_state((name, keys, position, has_gauss, gauss))  # noqa: NPY002
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


class PositionedLoader(DataLoader):
    """A DataLoader whose sampler starts where its ``ResumableDataModule`` says. The position is
    checkpointed by the DataModule, so the loader has no state of its own; having
    ``state_dict``/``load_state_dict`` tells Lightning that it resumes mid-epoch (else Lightning
    warns on every mid-epoch resume that results may be unreliable)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Nothing to restore here: ``ResumableDataModule.load_state_dict`` does it."""


class ResumableDataModule(L.LightningDataModule):
    """A DataModule whose training position and random state are checkpointed, so that a resumed
    run repeats an uninterrupted one bit for bit.

    During a fit, every pass of the training sampler starts at the position reached after the
    batches trained so far (Lightning's restored `batch_progress.total.processed`): epoch
    ``batches // E`` after ``batches % E`` of its batches, E being the batches per epoch. It
    does not follow Lightning's epoch number (`set_epoch`), which can run one ahead of the data:
    a run stopped by max_steps mid-epoch still ends its epoch (on_train_epoch_end, then the
    epoch count goes up, then on_train_end), and when resumed, Lightning finishes the rest of that
    epoch under the next epoch number. The global random generators (torch, CUDA, numpy, Python)
    are saved with the position and restored when the first resumed pass begins, right before
    its first batch is drawn, so that dropout and other randomness continue as uninterrupted.

    Subclasses have `seed`, `batch_size` and `num_workers` hyperparameters, build their
    training sampler with `train_sampler` and their loaders with `_loader`.
    """

    def __init__(self) -> None:
        super().__init__()
        # (epoch, global samples consumed in it) where training resumes outside a fit; see
        # state_dict(). During a fit the trainer's batch count decides (see _pass_start).
        self.resume = (0, 0)
        # Random states of a checkpoint, restored when the first resumed pass begins.
        self._rng: dict[str, Any] | None = None
        self._sampler: ResumableSampler | None = None

    def train_sampler(
        self,
        sampler: type[ResumableSampler],
        dataset: Dataset,
        samples_per_epoch: int | None = None,
    ) -> ResumableSampler:
        """A sampler of the given order for this rank, starting where training resumes."""
        trainer = self.trainer
        rank, world_size = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        self._sampler = sampler(
            dataset,
            self.hparams.seed,
            rank,
            world_size,
            self.resume,
            samples_per_epoch,
            position=self._pass_start,
        )
        return self._sampler

    def _loader(self, dataset: Dataset, sampler: Sampler | None = None) -> DataLoader:
        # The loader draws its workers' base seed from `generator` every time it is iterated;
        # without one it would draw from the global torch generator and shift dropout.
        return PositionedLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    # Evaluation loaders over what ``setup`` stores in ``val_set``, ``test_sets`` and
    # ``predict_sets`` (one loader per test or prediction set: their batches cannot mix sizes).
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(d) for d in self.test_sets]

    def predict_dataloader(self) -> list[DataLoader]:
        return [self._loader(d) for d in self.predict_sets]

    def _batches_trained(self) -> int | None:
        """Training batches run so far, those before the checkpoint included; None when no
        trainer is fitting."""
        state = getattr(self.trainer, "state", None)
        if state is None or state.fn != TrainerFn.FITTING:
            return None
        return self.trainer.fit_loop.epoch_loop.batch_progress.total.processed

    def _epoch_batches(self) -> int | None:
        """Training batches in an epoch, as the fit loop runs it; None before the training
        loader exists."""
        trainer = self.trainer
        batches = trainer.num_training_batches
        if math.isinf(batches):
            if self._sampler is None:
                return None
            # Asked before Lightning counted them: when a pass of the first epoch starts with
            # worker processes, which begin sampling as soon as the loader is iterated.
            batches = math.ceil(len(self._sampler) / self.hparams.batch_size)
            limit = trainer.limit_train_batches
            batches = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
        return max(1, int(batches))

    def _position(self, batches: int) -> tuple[int, int]:
        """(epoch, global samples consumed in it) after `batches` training batches."""
        per_epoch = self._epoch_batches()
        if per_epoch is None:  # asked before the training loader is made: as loaded
            return (0, 0) if batches == 0 else self.resume
        epoch, batch = divmod(batches, per_epoch)
        return epoch, batch * self.hparams.batch_size * self.trainer.world_size

    def _pass_start(self) -> tuple[int, int] | None:
        """Where a pass of the training sampler starts during a fit (None otherwise). The first
        pass of a fit resumed from a checkpoint, which starts where the checkpoint was saved,
        also restores the checkpoint's random state."""
        batches = self._batches_trained()
        if batches is None:
            return None
        position = self._position(batches)
        if self._rng is not None:
            # Not in a fit that did not resume (a checkpoint loaded by validate, say).
            if position == self.resume:
                set_rng_states(self._rng)
            self._rng = None
        return position

    def state_dict(self) -> dict[str, Any]:
        """Where training resumes: an epoch and the global samples consumed in it; during a fit
        also the global random states ("rng", see `rng_states`).

        Lightning calls this when it saves a checkpoint. The position comes from the trainer's
        count of batches trained on, not from the sampler, which the DataLoader's prefetching
        (and its workers) run ahead of training, nor from the trainer's epoch number, which runs
        ahead once an epoch cut short by max_steps has ended.
        """
        batches = self._batches_trained()
        if batches is None:
            epoch, samples = self.resume
            return {"epoch": epoch, "samples": samples}
        epoch, samples = self._position(batches)
        return {"epoch": epoch, "samples": samples, "rng": rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning calls this before train_dataloader(), whose sampler starts from here.
        self.resume = (state_dict["epoch"], state_dict["samples"])
        self._rng = state_dict.get("rng")
