"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

Formats (https://www.cs.toronto.edu/~kriz/cifar.html):

- ``cifar-100-python.tar.gz`` (169,001,437 bytes, md5 eb9058c3a382ffc7106e4002c42a8d85) holds
  ``cifar-100-python/{train,test,meta}``; ``cifar-10-python.tar.gz`` (170,498,071 bytes, md5
  c58f30108f718f92721af3b95e74349a) holds ``cifar-10-batches-py/{data_batch_1..5,test_batch,
  batches.meta}``.
- Each member is a Python-2 pickle (read with ``encoding="bytes"``, so its keys are bytes) of a
  dict: ``data`` is a uint8 array (N, 3072), each row the R plane, then G, then B, each plane
  32 x 32 row-major, so a reshape to (N, 3, 32, 32) is the image tensor; labels are lists of
  ints under ``labels`` (CIFAR-10) or ``fine_labels`` (0-99) and ``coarse_labels`` (0-19)
  (CIFAR-100). The meta member names the classes: ``label_names``, or ``fine_label_names`` and
  ``coarse_label_names``.

The files are read either from the archive in ``data_dir`` (md5 checked on every load; members
are streamed, nothing is extracted) or from its extracted folder there. Pickles are loaded by
:class:`RestrictedUnpickler`, which builds numpy arrays and nothing else, so a tampered file
cannot run code.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch

from ...errors import DataError
from ..files import atomic_write
from .base import ImageDataset, file_md5

log = logging.getLogger("lit_metriplector")
# Python callers pass download=True; the CLI spells the same setting differently.
DOWNLOAD_HINT = "pass download=True (on the command line: --data.init_args.download=true)"

Split = Literal["train", "test"]


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR variant lives and how its files are laid out.

    Args:
        name: Human-readable name for messages.
        archive: File name of the official archive.
        url: Official download address.
        md5: md5 of the official archive.
        size: Size of the official archive in bytes.
        members: Pickles of each split, in order, as named inside the archive.
        meta: The member that names the classes.
        mean: Per-channel mean of the training images on the [0, 1] scale.
        std: Per-channel standard deviation of the training images on the [0, 1] scale.
    """

    name: str
    archive: str
    url: str
    md5: str
    size: int
    members: dict[str, tuple[str, ...]]
    meta: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# mean/std: the per-channel statistics of the 50,000 training images (a standard pair).
CIFAR10 = CifarSpec(
    name="CIFAR-10",
    archive="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    size=170_498_071,
    members={
        "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        "test": ("cifar-10-batches-py/test_batch",),
    },
    meta="cifar-10-batches-py/batches.meta",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarSpec(
    name="CIFAR-100",
    archive="cifar-100-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    size=169_001_437,
    members={"train": ("cifar-100-python/train",), "test": ("cifar-100-python/test",)},
    meta="cifar-100-python/meta",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle can name any importable callable and call it (``os.system`` included), so this one
    resolves only the three globals an array's pickle names, under numpy 1's module name (the
    official files) and numpy 2's; any other raises :class:`DataError` before anything runs.

    Args:
        file: Binary file holding the pickle.
        name: What to call the file in messages.
    """

    # np.ndarray.__reduce__ names the reconstructor wherever this numpy keeps it, which avoids
    # importing numpy.core (deprecated in numpy 2).
    _RECONSTRUCT = np.empty(0).__reduce__()[0]
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def __init__(self, file: IO[bytes], name: str) -> None:
        super().__init__(file, encoding="bytes")  # Python 2's str loads as bytes
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[module, name]
        except KeyError:
            raise DataError(
                f"{self.name} asks to load {module}.{name}, which no CIFAR file needs: refusing "
                "it, as the file is not the official one (delete it and get the official archive)"
            ) from None


def load_pickle(file: IO[bytes], name: str) -> Any:
    """Load a CIFAR pickle with :class:`RestrictedUnpickler`.

    Args:
        file: Binary file holding the pickle.
        name: What to call the file in messages.
    """
    try:
        return RestrictedUnpickler(file, name).load()
    except DataError:
        raise
    except Exception as err:  # a damaged pickle can fail in many ways, all meaning the same
        raise DataError(
            f"{name} is not a readable pickle ({type(err).__name__}: {err}): delete it and get "
            "the official archive"
        ) from err


def download_file(url: str, path: str | Path, md5: str | None = None) -> None:
    """Fetch ``url`` to ``path`` through a temporary file that becomes ``path`` only when whole
    and (if ``md5`` is given) verified; progress goes to the "lit_metriplector" logger.

    Args:
        url: Address to fetch.
        path: Destination file.
        md5: Expected hex md5 of the content, or None to skip the check.
    """
    path = Path(path)
    log.info("downloading %s to %s", url, path)
    digest = hashlib.md5(usedforsecurity=False)  # an integrity check, not a security one
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_write(path) as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, reported = 0, 0
            while chunk := response.read(2**20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                # Every tenth when the size is known, else every 16 MiB.
                step = done * 10 // total if total else done // 2**24
                if step > reported:
                    reported = step
                    shown = f"{10 * step}%" if total else f"{done / 2**20:.0f} MiB"
                    log.info("downloaded %s of %s", shown, path.name)
            if total and done != total:
                raise DataError(
                    f"the download of {url} stopped after {done:,} of {total:,} bytes: "
                    f"try again, or place the file at {path} yourself"
                )
            if md5 is not None and digest.hexdigest() != md5:
                raise DataError(
                    f"the file downloaded from {url} has md5 {digest.hexdigest()}, not the "
                    f"expected {md5}, so it was not saved to {path}: try again later, or place "
                    "the official file there yourself"
                )
    except (urllib.error.URLError, OSError) as err:
        raise DataError(
            f"downloading {url} to {path} failed ({err}): check the connection, or place the "
            "file there yourself"
        ) from err


def load_cifar10(
    data_dir: str | Path,
    split: Split = "train",
    *,
    download: bool = False,
    url: str = CIFAR10.url,
    md5: str | None = CIFAR10.md5,
) -> ImageDataset:
    """CIFAR-10: 50,000 training or 10,000 test images, 3 x 32 x 32, in 10 classes.

    Args:
        data_dir: Folder holding ``cifar-10-python.tar.gz`` or its extracted
            ``cifar-10-batches-py/``.
        split: "train" (the five data batches, in order) or "test".
        download: Fetch the archive from ``url`` if it is missing or damaged.
        url: Where to download from.
        md5: Expected md5 of the archive; None skips the check.
    """
    return _load(CIFAR10, data_dir, split, "labels", "label_names", download, url, md5)


def load_cifar100(
    data_dir: str | Path,
    split: Split = "train",
    *,
    labels: Literal["fine", "coarse"] = "fine",
    download: bool = False,
    url: str = CIFAR100.url,
    md5: str | None = CIFAR100.md5,
) -> ImageDataset:
    """CIFAR-100: 50,000 training or 10,000 test images, 3 x 32 x 32, in 100 classes (or 20
    superclasses).

    Args:
        data_dir: Folder holding ``cifar-100-python.tar.gz`` or its extracted
            ``cifar-100-python/``.
        split: "train" or "test".
        labels: "fine" (100 classes) or "coarse" (20 superclasses).
        download: Fetch the archive from ``url`` if it is missing or damaged.
        url: Where to download from.
        md5: Expected md5 of the archive; None skips the check.
    """
    if labels not in ("fine", "coarse"):
        raise ValueError(f'labels must be "fine" or "coarse", got {labels!r}')
    keys = f"{labels}_labels", f"{labels}_label_names"
    return _load(CIFAR100, data_dir, split, *keys, download, url, md5)


def _load(
    spec: CifarSpec,
    data_dir: str | Path,
    split: str,
    label_key: str,
    names_key: str,
    download: bool,
    url: str,
    md5: str | None,
) -> ImageDataset:
    """Read, check and assemble one split (see the load_* functions for the arguments)."""
    if split not in spec.members:
        raise ValueError(f'split must be "train" or "test", got {split!r}')
    members = _read_members(
        spec, Path(data_dir), (*spec.members[split], spec.meta), download, url, md5
    )
    where, meta = members[spec.meta]
    classes = tuple(
        n.decode() if isinstance(n, bytes) else str(n) for n in _field(meta, names_key, where)
    )
    images, targets = [], []
    for member in spec.members[split]:
        where, batch = members[member]
        data = _field(batch, "data", where)
        labels = np.asarray(_field(batch, label_key, where))
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2):
            raise DataError(f"{where}: 'data' is not a uint8 (N, 3072) array: not a CIFAR file")
        if data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
            raise DataError(
                f"{where}: 'data' has shape {data.shape} and {label_key!r} {labels.shape}, not "
                f"(N, 3072) and (N,): not a {spec.name} file"
            )
        if (
            labels.dtype.kind not in "iu"
            or labels.min(initial=0) < 0
            or (labels.max(initial=0) >= len(classes))
        ):
            raise DataError(f"{where}: {label_key!r} are not all in 0..{len(classes) - 1}")
        images.append(data)
        targets.append(labels.astype(np.int64))
    # Each row is the R, G, B planes in turn, each 32 x 32 row-major: exactly (3, 32, 32).
    pixels = torch.from_numpy(np.concatenate(images).reshape(-1, 3, 32, 32))
    return ImageDataset(
        pixels, torch.from_numpy(np.concatenate(targets)), classes, spec.mean, spec.std
    )


def _read_members(
    spec: CifarSpec,
    data_dir: Path,
    members: tuple[str, ...],
    download: bool,
    url: str,
    md5: str | None,
) -> dict[str, tuple[str, Any]]:
    """Unpickle ``members`` from the extracted folder if it holds them all, else from the
    (checked or downloaded) archive; each as (its name for messages, its content)."""
    files = [data_dir / m for m in members]
    if all(f.is_file() for f in files):
        loaded = {}
        for member, file in zip(members, files, strict=True):
            with open(file, "rb") as f:
                loaded[member] = str(file), load_pickle(f, str(file))
        return loaded
    archive = _checked_archive(spec, data_dir, download, url, md5)
    loaded = {}
    try:
        # A streamed read decompresses the archive once, whatever the order of the members.
        with tarfile.open(archive, "r|gz") as tar:
            for info in tar:
                member = info.name.removeprefix("./")
                if member in members and info.isfile():
                    where = f"{archive}:{member}"
                    loaded[member] = where, load_pickle(tar.extractfile(info), where)
                    if len(loaded) == len(members):
                        break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{archive} is not a readable tar.gz archive ({err}): replace it with the official "
            f"{spec.name} archive from {url}, or " + DOWNLOAD_HINT
        ) from err
    if missing := [m for m in members if m not in loaded]:
        raise DataError(
            f"{archive} lacks {', '.join(missing)}: it is not the official {spec.name} archive; "
            f"replace it with the one from {url}, or " + DOWNLOAD_HINT
        )
    return loaded


def _checked_archive(
    spec: CifarSpec, data_dir: Path, download: bool, url: str, md5: str | None
) -> Path:
    """The path of the archive in data_dir, downloaded first if asked and missing or damaged."""
    path = data_dir / spec.archive
    if md5 == spec.md5:
        expected = f" ({spec.size:,} bytes, md5 {md5})"
    else:
        expected = f" (md5 {md5})" if md5 else ""
    if path.is_file():
        actual = file_md5(path) if md5 else None
        if actual == md5:
            return path
        problem = (
            f"{path} has md5 {actual} ({path.stat().st_size:,} bytes), not that of the official "
            f"{spec.name} archive{expected}"
        )
        if not download:
            raise DataError(
                f"{problem}: it is damaged or another file; replace it with the official archive "
                f"from {url}, or " + DOWNLOAD_HINT + " to fetch it again"
            )
        log.warning("%s: downloading it again", problem)
    elif not download:
        raise DataError(
            f"{path} is missing: place the official {spec.name} archive{expected} from {url} "
            f"at this path (or its extracted {spec.meta.split('/')[0]}/ folder beside it), or "
            + DOWNLOAD_HINT
        )
    download_file(url, path, md5)
    return path


def _field(record: Any, key: str, where: str) -> Any:
    """``record[key]`` from an unpickled dict whose keys are bytes (Python 2) or str."""
    if not isinstance(record, dict):
        raise DataError(f"{where} holds a {type(record).__name__}, not a dict: not a CIFAR file")
    for k in (key.encode(), key):
        if k in record:
            return record[k]
    raise DataError(f"{where} has no {key!r} entry: not the expected CIFAR file")
