"""Sudoku puzzle generation: puzzles per second of an earlier generator against this one.

Each set is generated from scratch (no cache) by the code of ``--old`` (a git revision, unpacked
to a temporary folder) in one process, then by this checkout's code in one process and in
``--processes`` processes, each in a fresh Python process (for several processes, the one-off
start of their server, about a second, is timed apart). Then ``fit --trainer.fast_dev_run=2``
of ``configs/sudoku.yaml`` is timed in an empty folder, as on a fresh clone (it generates its
training, validation and test sets). Writes ``docs/benchmarks/sudoku_generation.json`` and
``.md``::

    python benchmarks/sudoku_generation.py                  # about 2 minutes on 2 CPU cores
    python benchmarks/sudoku_generation.py --sets 30 --count 200 --no-fit

Run it on an otherwise idle machine: the rates are wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from common import ROOT, provenance, run_line, write_results

# The commit before generator version 2: the version-1 generator (pure-Python lists).
OLD = "d8b7ec4"
SETS = ["36", "30", "22-44", "22-25:minimal"]

# Run in a fresh interpreter with the code to measure first on the path; prints JSON. Light on
# imports and guarded, as the worker processes import it again.
MEASURE = """
import inspect, json, sys, time
from lit_metriplector.datasets.sudoku import generate

if __name__ == "__main__":
    spec, count, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    span, minimal = spec.removesuffix(":minimal"), spec.endswith(":minimal")
    low, _, high = span.partition("-")
    givens = (int(low), int(high or low))
    # this checkout names the kind of puzzles; earlier generators took a minimal flag
    if "kind" in inspect.signature(generate).parameters:
        how = {"kind": "minimal" if minimal else "any", "workers": workers}
    else:
        how = {"minimal": minimal, "workers": workers}
    start = time.perf_counter()
    if workers > 1:  # start the worker processes' server: a one-off, timed apart
        generate(workers, givens, 1, **how)
    started = time.perf_counter()
    puzzles, _ = generate(count, givens, 0, **how)
    seconds = time.perf_counter() - started
    mean = float((puzzles > 0).sum(1).mean())
    out = {"seconds": seconds, "rate": count / seconds, "mean_givens": mean}
    print(json.dumps({**out, "start_seconds": started - start}))
"""


def unpack(revision: str, into: Path) -> Path:
    """The package ``lit_metriplector`` of ``revision``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "archive", revision, "lit_metriplector"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(code: Path, spec: str, count: int, workers: int) -> dict:
    """Rate of generating ``count`` puzzles of ``spec`` with the package under ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryDirectory() as folder:  # the script file the worker processes import
        script = Path(folder) / "measure.py"
        script.write_text(MEASURE)
        out = subprocess.run(
            [sys.executable, str(script), spec, str(count), str(workers)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return json.loads(out.splitlines()[-1])


def time_fit() -> float:
    """Seconds of ``fit --trainer.fast_dev_run=2`` of ``configs/sudoku.yaml`` in an empty folder."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "lit_metriplector", "fit"]
        command += ["--config", str(ROOT / "configs" / "sudoku.yaml"), "--trainer.fast_dev_run=2"]
        start = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, capture_output=True)
        return time.perf_counter() - start


def markdown(report: dict) -> str:
    lines = [
        "# Sudoku puzzle generation",
        "",
        run_line(report),
        "",
        f"Puzzles per second, each set generated from scratch; old = `{report['old']}` "
        f"(generator version 1), new = this checkout. With {report['processes']} processes, "
        "the one-off start of their server is not included (its seconds are in the JSON).",
        "",
        f"| set | puzzles | old, 1 process | new, 1 process | new, {report['processes']} "
        "processes | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for spec, row in report["sets"].items():
        best = row["new_parallel"]["rate"]
        lines.append(
            f"| {spec} | {row['count']:,} | {row['old']['rate']:,.0f} | "
            f"{row['new']['rate']:,.0f} | {best:,.0f} | {best / row['old']['rate']:.1f}× |"
        )
    if report.get("fit_seconds") is not None:
        lines += [
            "",
            "`python -m lit_metriplector fit --config configs/sudoku.yaml "
            f"--trainer.fast_dev_run=2` in an empty folder: {report['fit_seconds']:.0f} s.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", default=OLD, help="git revision of the earlier generator")
    parser.add_argument("--sets", nargs="+", default=SETS, help="e.g. 30 22-25:minimal")
    parser.add_argument("--count", type=int, default=2000, help="puzzles per set")
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-fit", action="store_true", help="skip timing fast_dev_run")
    parser.add_argument("--name", default="sudoku_generation")
    opts = parser.parse_args()

    report = {**provenance(), "old": opts.old, "processes": opts.processes, "sets": {}}
    with tempfile.TemporaryDirectory() as folder:
        old = unpack(opts.old, Path(folder))
        for spec in opts.sets:
            row = {"count": opts.count}
            row["old"] = measure(old, spec, opts.count, 0)
            row["new"] = measure(ROOT, spec, opts.count, 1)
            row["new_parallel"] = measure(ROOT, spec, opts.count, opts.processes)
            report["sets"][spec] = row
            print(spec, json.dumps(row), flush=True)
    report["fit_seconds"] = None if opts.no_fit else time_fit()
    write_results(opts.name, report, markdown(report))


if __name__ == "__main__":
    main()
