"""Progress of long data steps (generating, solving): count, rate and time left, logged at INFO.

A step that finishes within ``FIRST_AFTER`` seconds logs nothing; a longer one logs a line every
``EVERY`` seconds and a closing one, e.g.
``generating 20,000 training puzzles (22-44 givens): 6,000/20,000, 1,850/s, 8 s left``.
The command line prints the ``lit_metriplector`` logger, whose children the data modules use.
"""

from __future__ import annotations

import logging
import time

#: Seconds of work before the first line: shorter steps stay silent.
FIRST_AFTER = 3.0
#: Seconds between lines.
EVERY = 5.0


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _rate(rate: float) -> str:
    return f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.2g}/s"


class Progress:
    """Reports ``done`` out of ``total`` items of one step to ``log``.

    Args:
        log: the logger (a child of ``lit_metriplector``).
        what: the step, e.g. ``"generating 1,000 test puzzles (30 givens)"``.
        total: the number of items.
    """

    def __init__(self, log: logging.Logger, what: str, total: int) -> None:
        self.log, self.what, self.total = log, what, total
        self.started = time.monotonic()
        self.next_line = self.started + FIRST_AFTER
        self.spoke = False

    def update(self, done: int) -> None:
        """``done`` items are finished; logs a line when one is due (cheap to call often)."""
        now = time.monotonic()
        if now < self.next_line:
            return
        self.next_line = now + EVERY
        self.spoke = True
        rate = done / max(now - self.started, 1e-9)
        left = _duration((self.total - done) / rate) if rate else "unknown time"
        self.log.info(
            "%s: %s/%s, %s, %s left", self.what, f"{done:,}", f"{self.total:,}", _rate(rate), left
        )

    def finish(self) -> None:
        """The closing line (total time and rate), if the step was long enough to report."""
        if self.spoke:
            took = time.monotonic() - self.started
            self.log.info(
                "%s: done in %s, %s", self.what, _duration(took), _rate(self.total / took)
            )
