"""ByteTextDataModule: byte-level language modelling on any text (or binary) corpus.

Each split is one flat uint8 file read through numpy.memmap: the corpus file itself when it is a
single uncompressed file, otherwise a cache file of the concatenated, decompressed bytes.
Training windows start at random offsets that are a pure function of (seed, epoch, sample
index), so runs are reproducible and a run resumed from a checkpoint sees the same batches as an
uninterrupted one.
"""

import glob
import gzip
import hashlib
import logging
import lzma
import os
import sys
import sysconfig
import tempfile
import zipfile
from typing import IO

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from lit_metriplector.datamodules.sampling import ReplacementSampler, ResumableDataModule

log = logging.getLogger("lit_metriplector")

# The default corpus (the standard library's sources) is cut here to keep setup fast.
STDLIB_BYTES = 8 * 2**20
# The standard enwik8 split is 90M / 5M / 5M bytes of its 100M.
ENWIK8_BYTES = 100_000_000
ENWIK8_FRACTIONS = (0.05, 0.05)
COMPRESSED = (".xz", ".gz", ".zip")


def _walk(folder: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """Regular files under folder, recursively, sorted; hidden files and folders skipped."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in exclude]
        files += [os.path.join(root, n) for n in names if not n.startswith(".")]
    return sorted(f for f in files if os.path.isfile(f))


def _expand(entry: str) -> list[str]:
    """The files named by one path entry: a file, a folder or a glob pattern."""
    path = os.path.expanduser(entry)
    if os.path.isdir(path):
        if files := _walk(path):
            return files
        raise ValueError(f"folder {entry} contains no (non-hidden) files")
    if os.path.isfile(path):
        if os.path.getsize(path) == 0:
            raise ValueError(f"file {entry} is empty")
        return [path]
    if not any(c in path for c in "*?["):
        raise FileNotFoundError(f"{entry} does not exist")
    matches = sorted(glob.glob(path, recursive=True))
    files = [f for m in matches for f in (_walk(m) if os.path.isdir(m) else [m])]
    if not files:
        raise FileNotFoundError(f"no files match the glob pattern {entry}")
    return files


def _resolve(path: str | list[str]) -> list[str]:
    entries = [path] if isinstance(path, str) else path
    if not entries:
        raise ValueError("path is an empty list")
    return [f for entry in entries for f in _expand(entry)]


def _named_splits(folder: str) -> dict[str, list[str]]:
    """The train* / val* (valid*) / test* files directly in folder; {} if it has no train* and
    no val* or test* files."""
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    splits = {
        split: [os.path.join(folder, n) for n in names if n.startswith(split)]
        for split in ("train", "val", "test")
    }
    if not splits["train"] or not (splits["val"] or splits["test"]):
        return {}
    return {split: files for split, files in splits.items() if files}


def _stdlib_sources() -> list[str]:
    """The standard library's own .py files, sorted, as many as the default corpus needs."""
    files, total = [], 0
    for f in _walk(sysconfig.get_paths()["stdlib"], exclude=("site-packages",)):
        if f.endswith(".py") and total < STDLIB_BYTES:
            files.append(f)
            total += os.path.getsize(f)
    return files


def _zip_member(path: str) -> str:
    """The member of an enwik8-style zip to read: the one named enwik8, or else the only one."""
    with zipfile.ZipFile(path) as zf:
        members = [m.filename for m in zf.infolist() if not m.is_dir()]
    named = [m for m in members if os.path.basename(m) == "enwik8"]
    if named or len(members) == 1:
        return (named or members)[0]
    raise ValueError(
        f"zip {path} has no member named enwik8 and {len(members)} members instead of one: "
        f"{members[:5]}"
    )


def _open(path: str) -> IO[bytes]:
    """The bytes of a file, decompressed according to its extension."""
    if path.endswith(".xz"):
        return lzma.open(path)
    if path.endswith(".gz"):
        return gzip.open(path)
    if path.endswith(".zip"):
        return zipfile.ZipFile(path).open(_zip_member(path))
    return open(path, "rb")


def _flat_file(files: list[str], cache_dir: str, max_bytes: int | None = None) -> str:
    """A file holding the concatenated, decompressed bytes of files (at most max_bytes).

    A single uncompressed file is its own flat file. Otherwise the bytes are cached in cache_dir
    under a hash of the files' paths, sizes and mtimes; concurrent writers (DDP ranks, nodes on
    a shared disk) each write a private temporary file and atomically rename it, so a reader
    never sees half a file.
    """
    if len(files) == 1 and max_bytes is None and not files[0].endswith(COMPRESSED):
        return files[0]
    stats = [os.stat(f) for f in files]
    sources = [
        (os.path.abspath(f), s.st_size, s.st_mtime_ns) for f, s in zip(files, stats, strict=True)
    ]
    key = hashlib.sha256(repr((sources, max_bytes)).encode()).hexdigest()[:20]
    out = os.path.join(cache_dir, f"bytes-{key}.bin")
    if os.path.exists(out):
        return out
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"bytes-{key}.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as dst:
            budget = max_bytes if max_bytes is not None else sys.maxsize
            for f in files:
                with _open(f) as src:
                    while chunk := src.read(min(2**24, budget)):
                        dst.write(chunk)
                        budget -= len(chunk)
        os.replace(tmp, out)
    except BaseException:
        os.remove(tmp)
        raise
    return out


def _describe(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more files"


def _eval_offsets(length: int, seq_len: int, cap: int | None) -> np.ndarray:
    """Start offsets of evenly spaced windows, as many as fit without overlapping (at most cap)."""
    count = length // (seq_len + 1)
    if cap is not None:
        count = min(count, cap)
    return np.arange(count) * (length - seq_len - 1) // max(count - 1, 1)


class ByteWindows(Dataset):
    """Windows of seq_len + 1 consecutive bytes of a flat file; item i starts at byte i.

    Args:
        path: The flat uint8 file.
        offset: Where the split starts in the file.
        length: Bytes in the split.
        seq_len: Tokens per training sequence; windows have one more for the shifted target.
    """

    def __init__(self, path: str, offset: int, length: int, seq_len: int) -> None:
        self.path, self.offset, self.length, self.seq_len = path, offset, length, seq_len
        self.data = np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))

    def __len__(self) -> int:
        return self.length - self.seq_len

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.data[index : index + self.seq_len + 1].astype(np.int64))

    def __getstate__(self) -> dict:
        # Worker processes reopen the memmap rather than receive a pickled copy of the bytes.
        return {k: getattr(self, k) for k in ("path", "offset", "length", "seq_len")}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)


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
        path: Corpus: a file, a folder (all files under it, sorted, hidden ones skipped), a glob
            pattern, or a list of these. .xz and .gz files are decompressed; a .zip is read as
            enwik8. Default: the Python standard library's .py sources.
        val_path: Validation files (same forms as path) instead of a slice of the corpus.
        test_path: Test files (same forms as path) instead of a slice of the corpus.
        val_fraction: Share of the corpus held out for validation when val_path is unset.
        test_fraction: Share of the corpus held out for testing when test_path is unset.
        seq_len: Tokens (bytes) per sequence; each window holds seq_len + 1 bytes.
        batch_size: Windows per batch (per device).
        num_workers: DataLoader worker processes.
        seed: Seed of the training window offsets.
        samples_per_epoch: Training windows per epoch over all devices; default train bytes //
            seq_len.
        val_windows: Most validation windows; None for all non-overlapping ones.
        test_windows: Most test windows; None for all non-overlapping ones.
        cache_dir: Folder for the flat byte files of compressed or multi-file corpora; default
            a folder in the system temp dir. Files are named by a hash of their sources.
        prompts: Texts for `predict` to continue, as their UTF-8 bytes; default a single newline.
    """

    vocab_size = 256

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
        minimums = {
            "seq_len": (seq_len, 1),
            "batch_size": (batch_size, 1),
            "num_workers": (num_workers, 0),
            "samples_per_epoch": (samples_per_epoch, 1),
            "val_windows": (val_windows, 1),
            "test_windows": (test_windows, 1),
        }
        for name, (value, low) in minimums.items():
            if value is not None and value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        for name, value in {"val_fraction": val_fraction, "test_fraction": test_fraction}.items():
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if val_fraction + test_fraction >= 1:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1 to leave bytes for training, got "
                f"{val_fraction} + {test_fraction}"
            )
        prompts = ["\n"] if prompts is None else prompts
        if not prompts or not all(prompts):
            raise ValueError(f"prompts must be non-empty strings, got {prompts!r}")
        self.save_hyperparameters()
        self.prompts = [torch.tensor(list(p.encode()), dtype=torch.long) for p in prompts]
        self.predict_names = [f"prompt{i}" for i in range(len(prompts))]
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "lit_metriplector_text")
        self.splits: dict[str, ByteWindows] = {}  # filled by setup()

    def _spans(self) -> tuple[dict[str, tuple[str, int, int]], str]:
        """Each split's (flat file, offset, length), with the flat files built if missing, and a
        description of the corpus for the log."""
        hp = self.hparams
        max_bytes = None
        is_folder = isinstance(hp.path, str) and os.path.isdir(hp.path)
        named = _named_splits(hp.path) if is_folder else {}
        if hp.path is None:
            sources, max_bytes = {"train": _stdlib_sources()}, STDLIB_BYTES
            corpus = f"Python standard library sources in {sysconfig.get_paths()['stdlib']} "
            corpus += f"(first {STDLIB_BYTES:,} bytes of the .py files)"
        elif named:
            sources, corpus = named, f"{hp.path} (splits by file name)"
        else:
            sources, corpus = {"train": _resolve(hp.path)}, str(hp.path)
        for split, path in (("val", hp.val_path), ("test", hp.test_path)):
            if path is not None:
                sources[split] = _resolve(path)
        flat = {
            split: _flat_file(files, self.cache_dir, max_bytes if split == "train" else None)
            for split, files in sources.items()
        }

        # Splits without files of their own are cut from the end of the training bytes.
        n = os.path.getsize(flat["train"])
        fractions = (hp.val_fraction, hp.test_fraction)
        if len(sources["train"]) == 1 and sources["train"][0].endswith(".zip"):
            fractions = ENWIK8_FRACTIONS
            corpus += " (enwik8 split 90/5/5)"
            if n != ENWIK8_BYTES:
                log.info("%s holds %d bytes, not enwik8's 100M: 90/5/5 split scaled", hp.path, n)
        carved = {
            split: int(n * fraction)
            for split, fraction in zip(("val", "test"), fractions, strict=True)
            if split not in sources and fraction > 0
        }
        spans = {"train": (flat["train"], 0, n - sum(carved.values()))}
        start = spans["train"][2]
        for split, length in carved.items():
            spans[split] = (flat["train"], start, length)
            start += length
        spans.update({s: (f, 0, os.path.getsize(f)) for s, f in flat.items() if s != "train"})

        for split, (_, _, length) in spans.items():
            if length < hp.seq_len + 2:
                files = _describe(sources.get(split, sources["train"]))
                raise ValueError(
                    f"{split} split ({files}) has {length} bytes, fewer than seq_len + 2 = "
                    f"{hp.seq_len + 2}"
                )
        return spans, corpus

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
        offsets = _eval_offsets(windows.length, self.hparams.seq_len, cap)
        return self._loader(Subset(windows, offsets.tolist()))

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_dataloader("val", self.hparams.val_windows)

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self._eval_dataloader("test", self.hparams.test_windows)

    def predict_dataloader(self) -> list[DataLoader]:
        return [DataLoader([prompt], batch_size=1) for prompt in self.prompts]
