"""Files written for caches and outputs: whole or not at all."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ..errors import DataError, MetriplectorError, MissingFileError, OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a private temporary file beside ``path`` and rename it onto ``path`` on success.

    Concurrent writers (DDP ranks, nodes on a shared disk) each write their own file and the
    last rename wins, so a reader never sees half a file; on failure the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's files are private; the result should not be
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a ``Path`` if it is a file; else one error naming ``what`` it should be."""
    file = Path(path)
    if file.is_dir():
        raise DataError(f"{what} {file} is a folder; name a file")
    if not file.is_file():
        raise MissingFileError(f"{what} not found: {file}")
    return file


def describe_os_error(error: OSError) -> str:
    """The cause of a failed write in words a user can act on."""
    if error.errno == errno.ENOSPC:
        return "the disk is full"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.EROFS:
        return "the file system is read-only"
    return error.strerror or str(error)


@contextmanager
def output_errors(path: str | Path, action: str = "write") -> Iterator[None]:
    """Raise an ``OSError`` from the block as an ``OutputError``: one sentence naming the
    ``action`` on ``path`` and its cause (permission denied, a read-only file system, a full
    disk)."""
    try:
        yield
    except MetriplectorError:
        raise  # already says what is wrong (an OutputError is itself an OSError)
    except OSError as error:
        raise OutputError(f"cannot {action} {path}: {describe_os_error(error)}") from error
