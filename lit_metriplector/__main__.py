"""``python -m lit_metriplector`` and the ``lit-metriplector`` console script.

OpenMP's threads spin while they wait for work; when other processes share the cores (a CI
runner, a 2-core box running anything else) every parallel torch operation then waits for a
spinning thread to be descheduled: measured up to 15x slower per operation here (see
docs/benchmarks.md, "Thread policy"). Passive waiting must be chosen before torch loads OpenMP,
so it is set here, before anything imports torch; a value the user exported wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .cli import main  # noqa: E402  (after the thread policy)

if __name__ == "__main__":
    main()
