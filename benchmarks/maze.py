"""Maze generalisation: train on 15x15 only, test on 15x15, 39x39, 99x99 (and 201x201).

Trains the Metriplector maze model (``configs/maze.yaml``) and, on the same data with the same
steps and batch size, the DeepThinking baseline (weight-tied recurrent block with input recall,
more iterations on larger mazes), both through the shipped CLI. Then tests each on generated
mazes it never saw, per size, and writes ``docs/benchmarks/maze.json`` and ``maze.md``::

    python benchmarks/maze.py                               # about an hour on 2 CPU cores
    python benchmarks/maze.py --steps 50 --test-size 32 --cells 7 19 --baseline-cells 7 19

The baseline's eval cost grows with area times iterations (132 recurrent steps at 99x99), so its
largest sizes can be given fewer mazes (``--baseline-large-size``); the table says how many.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import DOCS, ROOT, provenance, run_line, write_results

from lit_metriplector.cli import main as cli
from lit_metriplector.modules.base import count_parameters

CONFIG = str(ROOT / "configs" / "maze.yaml")
MODELS = {
    "metriplector": [],
    "deepthinking": [
        "--model.init_args.network=lit_metriplector.networks.DeepThinkingNetwork",
        "--trainer.gradient_clip_val=1.0",  # as in Bansal et al. (2022)
    ],
}


def run(args: list[str]):
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    return cli([*args[:1], "--config", CONFIG, *args[1:], *quiet])


def train(name: str, extra: list[str], steps: int, lr: float, opts: argparse.Namespace) -> dict:
    start = time.perf_counter()
    fit = run(
        [
            "fit",
            *extra,
            "--test_after_fit=false",  # tested below, per size
            f"--trainer.max_steps={steps}",
            f"--model.init_args.optimizer.init_args.lr={lr}",
            f"--data.init_args.batch_size={opts.batch_size}",
            f"--trainer.logger.init_args.save_dir={opts.workdir}",
            f"--trainer.logger.init_args.name={name}",
        ]
    )
    seconds = time.perf_counter() - start
    params = count_parameters(fit.model.network)
    return {
        "train_seconds": seconds,
        "steps": fit.trainer.global_step,
        "lr": lr,
        "parameters": params,
        "checkpoint": fit.trainer.checkpoint_callback.last_model_path,
    }


def test(extra: list[str], ckpt: str, cells: int, size: int, batch_size: int) -> dict:
    start = time.perf_counter()
    result = run(
        [
            "test",
            *extra,
            f"--ckpt_path={ckpt}",
            f"--data.init_args.test_cells=[{cells}]",
            f"--data.init_args.test_size={size}",
            f"--data.init_args.batch_size={batch_size}",
            "--trainer.logger=false",
        ]
    )
    seconds = time.perf_counter() - start
    g = 2 * cells + 1
    metrics = result.trainer.callback_metrics
    return {
        "grid": f"{g}x{g}",
        "mazes": size,
        "seconds": seconds,
        "f1": float(metrics[f"test/{g}x{g}/f1"]),
        "exact": float(metrics[f"test/{g}x{g}/exact"]),
    }


def markdown(report: dict) -> str:
    lines = [
        "# Maze benchmark: train on 15x15, test on larger mazes",
        "",
        f"{run_line(report)}. Every model trains on batches of {report['batch_size']} "
        "generated 15x15 mazes (depth-first search) in the same data order, with AdamW, for the "
        "steps listed; test mazes are generated with other seeds.",
        "",
        "| model | parameters | train steps | learning rate | train time (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in report["models"].items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['steps']} | {r['lr']:g} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "| model | grid | mazes | F1 | exact match | test time (s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, r in report["models"].items():
        for t in r["tests"]:
            lines.append(
                f"| {name} | {t['grid']} | {t['mazes']} | {t['f1']:.4f} | "
                f"{t['exact']:.4f} | {t['seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--baseline-steps",
        type=int,
        default=None,
        help="training steps of the baseline (default: --steps)",
    )
    parser.add_argument("--lr", type=float, default=0.01, help="AdamW learning rate")
    parser.add_argument(
        "--baseline-lr",
        type=float,
        default=None,
        help="learning rate of the baseline (default: --lr)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add to the models already in docs/benchmarks/maze.json",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument(
        "--cells",
        type=int,
        nargs="+",
        default=[7, 19, 49, 100],
        help="test sizes in cells per side (grid 2c+1)",
    )
    parser.add_argument("--baseline-cells", type=int, nargs="+", default=[7, 19, 49])
    parser.add_argument(
        "--baseline-large-size", type=int, default=64, help="baseline mazes per size above 39x39"
    )
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "benchmark_maze")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    report = {
        **provenance(),
        "batch_size": opts.batch_size,
        "models": {},
    }
    if opts.merge:
        previous = json.loads((DOCS / "maze.json").read_text())
        report["models"] = previous["models"]
        report["command"] = f"{previous['command']}; {report['command']}"
    for name in opts.models:
        extra = MODELS[name]
        ours = name == "metriplector"
        steps = opts.steps if ours else opts.baseline_steps or opts.steps
        lr = opts.lr if ours else opts.baseline_lr or opts.lr
        result = train(name, extra, steps, lr, opts)
        cells = opts.cells if ours else opts.baseline_cells
        result["tests"] = []
        for c in cells:
            size = (
                opts.test_size if ours or c <= 19 else min(opts.test_size, opts.baseline_large_size)
            )
            result["tests"].append(test(extra, result["checkpoint"], c, size, opts.batch_size))
            print(name, result["tests"][-1], flush=True)
        report["models"][f"{name} ({steps} steps, lr {lr:g})"] = result
    write_results("maze", report, markdown(report))


if __name__ == "__main__":
    main()
