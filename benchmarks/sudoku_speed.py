"""Sudoku network speed: puzzles x iterations per second at eval, one thread, batch 1 and 256.

Builds the network of ``configs/sudoku.yaml`` through the CLI's parser (weights untrained: the
cost does not depend on them) and times ``iterate`` on generated puzzles, at the trained depth
and at 64 iterations. Writes ``docs/benchmarks/sudoku_speed.json`` and ``.md``::

    python benchmarks/sudoku_speed.py        # about a minute on one core
"""

from __future__ import annotations

import argparse
import time

import torch
from common import ROOT, provenance, run_line, write_results

from lit_metriplector.cli import build_from_config
from lit_metriplector.datasets.sudoku import generate


def rate(network: torch.nn.Module, puzzles: torch.Tensor, iterations: int, seconds: float) -> dict:
    """Puzzles x iterations per second, the best of repeated timings for at least ``seconds``."""
    with torch.no_grad():
        network.iterate(puzzles, iterations)  # warm up
        best, spent = float("inf"), 0.0
        while spent < seconds:
            start = time.perf_counter()
            network.iterate(puzzles, iterations)
            took = time.perf_counter() - start
            best, spent = min(best, took), spent + took
    return {
        "batch": len(puzzles),
        "iterations": iterations,
        "ms_per_puzzle": 1e3 * best / len(puzzles),
        "puzzle_iterations_per_s": len(puzzles) * iterations / best,
    }


def markdown(report: dict) -> str:
    lines = [
        "# Sudoku network speed",
        "",
        f"{run_line(report)}. `configs/sudoku.yaml`'s network ({report['parameters']:,} "
        "parameters), eval mode, best of repeated timings.",
        "",
        "| batch | iterations | ms / puzzle | puzzles x iterations / s |",
        "|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['batch']} | {r['iterations']} | {r['ms_per_puzzle']:.2f} | "
            f"{r['puzzle_iterations_per_s']:,.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--iterations", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    task, _ = build_from_config(ROOT / "configs" / "sudoku.yaml")
    network = task.network.eval()
    puzzles = torch.from_numpy(generate(max(opts.batches), (22, 44), seed=9)[0]).long()
    report = {
        **provenance(),
        "parameters": sum(p.numel() for p in network.parameters()),
        "results": [
            rate(network, puzzles[:batch], iterations, opts.seconds)
            for batch in opts.batches
            for iterations in opts.iterations
        ],
    }
    write_results("sudoku_speed", report, markdown(report))


if __name__ == "__main__":
    main()
