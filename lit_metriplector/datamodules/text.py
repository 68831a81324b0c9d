"""ByteTextDataModule: byte-level language modelling on any text (or binary) corpus.

The corpus library (files, flat byte files, splits, windows) is ``datasets.text``. Training
windows start at random offsets that are a pure function of (seed, epoch, sample index), so runs
are reproducible and a run resumed from a checkpoint sees the same batches as an uninterrupted
one.
"""

import logging
import os
import tempfile

import torch
from torch.utils.data import DataLoader, Subset

from ..datasets.text import ByteWindows, check_spans, eval_offsets, find_corpus, split_spans
from ..errors import ConfigError
from .sampling import ReplacementSampler, ResumableDataModule, require_at_least

log = logging.getLogger("lit_metriplector")


class ByteTextDataModule(ResumableDataModule):
    """Byte-level language modelling: batches are LongTensors (B, seq_len + 1) of byte values.

    The corpus is `path`, or, if unset, the Python standard library's .py sources (first 8 MiB),
    so that training works on any machine without data. A folder holding files named train*,
    val* (or valid*) and test* uses those files as the splits; a .zip is read as enwik8 and split
    90M / 5M / 5M (proportionally for a smaller member); otherwise the concatenated bytes are
    split by position, train first, then val, then test. `val_path` / `test_path` override.
    Training windows start at random offsets drawn deterministically from (seed, epoch, sample);
    the position in the epoch is checkpointed, so resumed runs continue the same data order.
    Validation and test windows are fixed and evenly spaced. `predict` yields the prompts to
    continue, one dataloader of one batch (1, P) per prompt, since prompts differ in length;
    `predict_names` names them prompt0, prompt1, ...

    Args:
        path: corpus: a file, a folder (all files under it, sorted, hidden ones skipped), a glob
            pattern, or a list of these. .xz and .gz files are decompressed; a .zip is read as
            enwik8. Default: the Python standard library's .py sources.
        val_path: validation files (same forms as path) instead of a slice of the corpus.
        test_path: test files (same forms as path) instead of a slice of the corpus.
        val_fraction: share of the corpus held out for validation when val_path is unset.
        test_fraction: share of the corpus held out for testing when test_path is unset.
        seq_len: tokens (bytes) per sequence; each window holds seq_len + 1 bytes.
        batch_size: windows per batch (per device).
        num_workers: DataLoader worker processes.
        seed: seed of the training window offsets.
        samples_per_epoch: training windows per epoch over all devices; default train bytes //
            seq_len.
        val_windows: most validation windows; None for all non-overlapping ones.
        test_windows: most test windows; None for all non-overlapping ones.
        cache_dir: folder for the flat byte files of compressed or multi-file corpora; default
            a folder in the system temp dir. Files are named by a hash of their sources.
        prompts: texts for `predict` to continue, as their UTF-8 bytes; default a single newline.
    """

    vocab_size = 256  # bytes; the CLI links it into the network's vocab_size

    def __init__(
        self,
        path: str | list[str] | None = None,
        val_path: str | list[str] | None = None,
        test_path: str | list[str] | None = None,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        seq_len: int = 256,
        batch_size: int = 16,
        num_workers: int = 0,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        val_windows: int | None = 512,
        test_windows: int | None = None,
        cache_dir: str | None = None,
        prompts: list[str] | None = None,
    ) -> None:
        super().__init__()
        require_at_least(
            1,
            seq_len=seq_len,
            batch_size=batch_size,
            samples_per_epoch=samples_per_epoch,
            val_windows=val_windows,
            test_windows=test_windows,
        )
        require_at_least(0, num_workers=num_workers)
        for name, value in {"val_fraction": val_fraction, "test_fraction": test_fraction}.items():
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if val_fraction + test_fraction >= 1:
            raise ConfigError(
                f"val_fraction + test_fraction must be < 1 to leave bytes for training, got "
                f"{val_fraction} + {test_fraction}"
            )
        prompts = ["\n"] if prompts is None else prompts
        if not prompts or not all(prompts):
            raise ConfigError(f"prompts must be non-empty strings, got {prompts!r}")
        self.save_hyperparameters()
        self.prompts = [torch.tensor(list(p.encode()), dtype=torch.long) for p in prompts]
        self.predict_names = [f"prompt{i}" for i in range(len(prompts))]
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "lit_metriplector_text")
        self.splits: dict[str, ByteWindows] = {}  # filled by setup()

    def _spans(self) -> tuple[dict, str]:
        """Each split's (flat file, offset, length), flat files built if missing, and a
        description of the corpus for the log."""
        hp = self.hparams
        corpus = find_corpus(hp.path, hp.val_path, hp.test_path)
        spans = split_spans(corpus, self.cache_dir, hp.val_fraction, hp.test_fraction)
        check_spans(spans, corpus, hp.seq_len)
        return spans, corpus.description

    def prepare_data(self) -> None:
        # Lightning runs this in one process per node: the flat files are built once, before
        # setup() opens them on every rank.
        self._spans()

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        spans, corpus = self._spans()
        self.splits = {s: ByteWindows(*span, self.hparams.seq_len) for s, span in spans.items()}
        sizes = ", ".join(f"{s} {w.length:,}" for s, w in self.splits.items())
        log.info("byte corpus: %s; bytes per split: %s", corpus, sizes)

    def _split_bytes(self, split: str) -> int:
        if not self.splits:
            raise RuntimeError("ByteTextDataModule: call setup() before asking for split sizes")
        return self.splits[split].length if split in self.splits else 0

    @property
    def train_bytes(self) -> int:
        return self._split_bytes("train")

    @property
    def val_bytes(self) -> int:
        return self._split_bytes("val")

    @property
    def test_bytes(self) -> int:
        return self._split_bytes("test")

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        samples = hp.samples_per_epoch or self.train_bytes // hp.seq_len
        windows = self.splits["train"]
        return self._loader(windows, self.train_sampler(ReplacementSampler, windows, samples))

    def _eval_dataloader(self, split: str, cap: int | None) -> DataLoader | list[DataLoader]:
        if split not in self.splits:
            return []  # no such split (its fraction is 0): Lightning skips the loop
        windows = self.splits[split]
        offsets = eval_offsets(windows.length, self.hparams.seq_len, cap)
        return self._loader(Subset(windows, offsets.tolist()))

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_dataloader("val", self.hparams.val_windows)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_dataloader("test", self.hparams.test_windows)

    def predict_dataloader(self) -> list[DataLoader]:
        return [DataLoader([prompt], batch_size=1) for prompt in self.prompts]
