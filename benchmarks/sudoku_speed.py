"""Sudoku network speed: puzzles x iterations per second at eval (batch 1 and 256), and, with
``--train-batch``, seconds per training step.

Builds the network of a config through the CLI's parser (weights untrained: the cost does not
depend on them) and times ``iterate`` on generated puzzles, at the trained depth and at 64
iterations; a training step is forward, backward and the optimizer at the config's drawn depths,
compiled if the config says ``compile: true``. Writes ``docs/benchmarks/<name>.json`` and
``.md``::

    python benchmarks/sudoku_speed.py        # about a minute on one core
    python benchmarks/sudoku_speed.py --config configs/sudoku_gpu.yaml --device cuda \\
        --train-batch 512 --name sudoku_speed_gpu   # what benchmarks/gpu/sudoku.sh sizes its run by
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from common import ROOT, provenance, run_line, seconds, write_results

from lit_metriplector.cli import build_from_config
from lit_metriplector.datasets.sudoku import generate
from lit_metriplector.modules.sudoku import blank_cross_entropy


def best_time(work: Callable[[], object], device: torch.device, budget: float) -> float:
    """The best of repeated timings of ``work`` for at least ``budget`` seconds (after a
    warm-up)."""
    seconds(work, device)
    best, spent = float("inf"), 0.0
    while spent < budget:
        took = seconds(work, device)
        best, spent = min(best, took), spent + took
    return best


def rate(network: torch.nn.Module, puzzles: torch.Tensor, iterations: int, budget: float) -> dict:
    """Puzzles x iterations per second of ``iterate`` at eval."""
    with torch.no_grad():
        best = best_time(lambda: network.iterate(puzzles, iterations), puzzles.device, budget)
    return {
        "batch": len(puzzles),
        "iterations": iterations,
        "ms_per_puzzle": 1e3 * best / len(puzzles),
        "puzzle_iterations_per_s": len(puzzles) * iterations / best,
    }


def train_step_seconds(task, puzzles: torch.Tensor, solutions: torch.Tensor, steps: int) -> float:
    """Mean seconds of a training step (depths drawn as in training) over ``steps`` steps, after
    two warm-up steps (compiling, if the task compiles)."""
    network = task.network.train()
    optimizer = torch.optim.AdamW(network.parameters())
    target = torch.stack([puzzles, solutions], 1)

    def step() -> None:
        loss = blank_cross_entropy(network(puzzles)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        seconds(step, puzzles.device)
    torch.manual_seed(0)  # the same depths every run
    return seconds(lambda: [step() for _ in range(steps)], puzzles.device) / steps


def markdown(report: dict) -> str:
    lines = [
        "# Sudoku network speed",
        "",
        f"{run_line(report)}. `{report['config']}`'s network ({report['parameters']:,} "
        f"parameters) on {report['device']}, eval mode, best of repeated timings.",
        "",
        "| batch | iterations | ms / puzzle | puzzles x iterations / s |",
        "|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['batch']} | {r['iterations']} | {r['ms_per_puzzle']:.3f} | "
            f"{r['puzzle_iterations_per_s']:,.0f} |"
        )
    if "train" in report:
        t = report["train"]
        lines += [
            "",
            f"Training step at batch {t['batch']} (depths {t['depths']}, compiled: "
            f"{t['compiled']}): **{1e3 * t['seconds_per_step']:.1f} ms** "
            f"(mean of {t['steps']} steps).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sudoku.yaml")
    parser.add_argument("--device", default="cpu", help="e.g. cuda")
    parser.add_argument(
        "--cli-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="a CLI argument after the config, e.g. --cli-arg=--model.init_args.compile=false",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--iterations", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--train-batch", type=int, help="also time training steps of this batch")
    parser.add_argument("--train-steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--name", default="sudoku_speed")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    device = torch.device(opts.device)
    task, _ = build_from_config(opts.config, *opts.cli_arg)
    network = task.network.to(device).eval()
    size = max(*opts.batches, opts.train_batch or 0)
    puzzles, solutions = (
        torch.from_numpy(a).long().to(device) for a in generate(size, (22, 44), 9)
    )
    report = {
        **provenance(),
        "config": str(opts.config.relative_to(ROOT) if opts.config.is_absolute() else opts.config),
        "device": str(device),
        "parameters": sum(p.numel() for p in network.parameters()),
        "results": [
            rate(network, puzzles[:batch], iterations, opts.seconds)
            for batch in opts.batches
            for iterations in opts.iterations
        ],
    }
    if opts.train_batch:
        task.configure_model()  # compiles the network if the config says so, as a fit does
        batch = slice(0, opts.train_batch)
        seconds = train_step_seconds(task, puzzles[batch], solutions[batch], opts.train_steps)
        report["train"] = {
            "batch": opts.train_batch,
            "depths": list(network.train_iterations or [network.iterations] * 2),
            "compiled": bool(task.hparams.compile),
            "steps": opts.train_steps,
            "seconds_per_step": seconds,
        }
    write_results(opts.name, report, markdown(report))


if __name__ == "__main__":
    main()
