"""The project's own errors: bad data, bad files, bad values. The CLI prints them as one or two
readable lines (no traceback unless ``LIT_METRIPLECTOR_DEBUG=1``); Python callers catch them as
the built-in types they also derive from."""

from __future__ import annotations


class MetriplectorError(Exception):
    """Base of every error whose message alone tells the user what is wrong and what to do."""

    # The most recent one raised: libraries that validate our constructors (jsonargparse) keep
    # only the message of what they caught; the CLI finds the error again through this.
    last: MetriplectorError | None = None

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        MetriplectorError.last = self


class DataError(MetriplectorError, ValueError):
    """A data file or corpus is missing, malformed or unsuitable; the message names the file
    (and the line or record where it applies)."""


class ConfigError(MetriplectorError, ValueError):
    """A setting has a value that cannot work; the message names the setting."""


class DivergenceError(MetriplectorError, FloatingPointError):
    """Training produced non-finite values; the message names the step, quantity and layer."""


class MissingFileError(DataError, FileNotFoundError):
    """A file or folder the configuration names does not exist."""


class OutputError(MetriplectorError, OSError):
    """A file or folder the run writes (logs, checkpoints, predictions, caches) cannot be
    written: no permission, a read-only or full disk; the message names the path."""
