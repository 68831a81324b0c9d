"""Byte corpora: finding the files of a corpus, flattening them into one uint8 file, cutting
splits, and windows over them. Plain numpy/torch, no Lightning.

Each split is a span ``(flat file, offset, length)`` of a flat uint8 file read through
``numpy.memmap``: the corpus file itself when it is a single uncompressed file, otherwise a cache
file of the concatenated, decompressed bytes.
"""

import glob
import gzip
import hashlib
import logging
import lzma
import os
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from typing import IO

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, MissingFileError
from .files import atomic_write

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
        raise DataError(f"folder {entry} contains no (non-hidden) files")
    if os.path.isfile(path):
        if os.path.getsize(path) == 0:
            raise DataError(f"file {entry} is empty")
        return [path]
    if not any(c in path for c in "*?["):
        raise MissingFileError(f"{entry} does not exist")
    matches = sorted(glob.glob(path, recursive=True))
    files = [f for m in matches for f in (_walk(m) if os.path.isdir(m) else [m])]
    if not files:
        raise MissingFileError(f"no files match the glob pattern {entry}")
    return files


def _resolve(path: str | list[str]) -> list[str]:
    entries = [path] if isinstance(path, str) else path
    if not entries:
        raise DataError("path is an empty list")
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
    raise DataError(
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


def flat_file(files: list[str], cache_dir: str, max_bytes: int | None = None) -> str:
    """A file holding the concatenated, decompressed bytes of files (at most max_bytes).

    A single uncompressed file is its own flat file. Otherwise the bytes are cached in cache_dir
    under a hash of the files' paths, sizes and mtimes (written atomically: concurrent ranks are
    safe).
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
    with atomic_write(out) as dst:
        budget = max_bytes if max_bytes is not None else sys.maxsize
        for f in files:
            with _open(f) as src:
                while chunk := src.read(min(2**24, budget)):
                    dst.write(chunk)
                    budget -= len(chunk)
    return out


def _describe(files: list[str]) -> str:
    return files[0] if len(files) == 1 else f"{files[0]} and {len(files) - 1} more files"


def eval_offsets(length: int, seq_len: int, cap: int | None) -> np.ndarray:
    """Start offsets of evenly spaced windows, as many as fit without overlapping (at most cap)."""
    count = length // (seq_len + 1)
    if cap is not None:
        count = min(count, cap)
    return np.arange(count) * (length - seq_len - 1) // max(count - 1, 1)


class ByteWindows(Dataset):
    """Windows of seq_len + 1 consecutive bytes of a flat file; item i starts at byte i.

    Args:
        path: the flat uint8 file.
        offset: where the split starts in the file.
        length: bytes in the split.
        seq_len: tokens per training sequence; windows have one more for the shifted target.
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


Span = tuple[str, int, int]  # (flat file, offset, length) of a split


@dataclass(frozen=True)
class Corpus:
    """The files of each split (``"train"`` always) and how to read them.

    Args:
        sources: files per split.
        description: what the corpus is, for the log.
        max_bytes: cut of the training bytes (the default corpus), or ``None``.
        fractions: ``(val, test)`` shares to carve from the training bytes, overriding the
            configured ones (enwik8's standard split), or ``None``.
    """

    sources: dict[str, list[str]]
    description: str
    max_bytes: int | None = None
    fractions: tuple[float, float] | None = None


def find_corpus(
    path: str | list[str] | None,
    val_path: str | list[str] | None = None,
    test_path: str | list[str] | None = None,
) -> Corpus:
    """The corpus named by ``path`` (see ``ByteTextDataModule``); ``None``: the standard
    library's sources."""
    if path is None:
        stdlib = sysconfig.get_paths()["stdlib"]
        description = f"Python standard library sources in {stdlib} "
        description += f"(first {STDLIB_BYTES:,} bytes of the .py files)"
        corpus = Corpus({"train": _stdlib_sources()}, description, max_bytes=STDLIB_BYTES)
    elif isinstance(path, str) and os.path.isdir(path) and (named := _named_splits(path)):
        corpus = Corpus(named, f"{path} (splits by file name)")
    else:
        files = _resolve(path)
        if len(files) == 1 and files[0].endswith(".zip"):
            description = f"{path} (enwik8 split 90/5/5)"
            corpus = Corpus({"train": files}, description, fractions=ENWIK8_FRACTIONS)
        else:
            corpus = Corpus({"train": files}, str(path))
    for split, extra in (("val", val_path), ("test", test_path)):
        if extra is not None:
            corpus.sources[split] = _resolve(extra)
    return corpus


def split_spans(
    corpus: Corpus, cache_dir: str, val_fraction: float, test_fraction: float
) -> dict[str, Span]:
    """Each split's span, with the flat files built if missing. Splits without files of their
    own are cut from the end of the training bytes, val first, then test."""
    flat = {
        split: flat_file(files, cache_dir, corpus.max_bytes if split == "train" else None)
        for split, files in corpus.sources.items()
    }
    n = os.path.getsize(flat["train"])
    fractions = corpus.fractions or (val_fraction, test_fraction)
    if corpus.fractions is not None and n != ENWIK8_BYTES:
        log.info("%s holds %d bytes, not enwik8's 100M: 90/5/5 split scaled", flat["train"], n)
    carved = {
        split: int(n * fraction)
        for split, fraction in zip(("val", "test"), fractions, strict=True)
        if split not in corpus.sources and fraction > 0
    }
    spans = {"train": (flat["train"], 0, n - sum(carved.values()))}
    start = spans["train"][2]
    for split, length in carved.items():
        spans[split] = (flat["train"], start, length)
        start += length
    spans.update({s: (f, 0, os.path.getsize(f)) for s, f in flat.items() if s != "train"})
    return spans


def check_spans(spans: dict[str, Span], corpus: Corpus, seq_len: int) -> None:
    """Every split must hold at least one window and its target: ``seq_len + 2`` bytes."""
    for split, (_, _, length) in spans.items():
        if length < seq_len + 2:
            files = _describe(corpus.sources.get(split, corpus.sources["train"]))
            raise DataError(
                f"{split} split ({files}) has {length} bytes, fewer than seq_len + 2 = "
                f"{seq_len + 2}"
            )
