"""Mazes with loops: train on 15x15 only, test on unseen 15x15, 39x39, 99x99 and 201x201 mazes.

Trains through the shipped CLI, on the same generated data in the same order:

- ``metriplector``: ``configs/maze_loops.yaml`` (fronts prune the maze to its shortest paths,
  then the Poisson solve and the stress-energy readout);
- ``metriplector (perfect)``: ``configs/maze.yaml``, the perfect-maze model, on its own data;
- ``deepthinking``: DT-Net with recall on ``maze_loops.yaml``'s data, at the Metriplector's
  steps and at 5x them (the ``--dt-steps`` list).

Then, in this process on one thread, tests each model on mazes it never saw, per loop density and
size: exact match (every shortest-path site and nothing else), optimal (the predicted sites are
a shortest path, any of tied ones; ``metrics.OptimalPath``), F1; inference milliseconds per maze
(batches of ``--batch-size``) against a plain Python breadth-first search (``shortest_paths``,
the two searches that mark every shortest path) on the same mazes; and the iterations of every
solve (front steps and CG iterations, per batch). Writes ``docs/benchmarks/maze.json`` and
``maze.md``::

    python benchmarks/maze.py                        # about an hour on 2 CPU cores
    python benchmarks/maze.py --test-size 16 --dt-steps 20 --steps 20 --sizes 7 19   # minutes
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import ROOT, provenance, run_line, write_results
from torchmetrics import MetricCollection

from lit_metriplector.cli import main as cli
from lit_metriplector.core import arrival_times
from lit_metriplector.datasets.mazes import Channel, GeneratedMazes, decode, shortest_paths
from lit_metriplector.metrics import ExactMatch, OptimalPath, PathF1
from lit_metriplector.modules import MazeTask
from lit_metriplector.modules.base import count_parameters
from lit_metriplector.networks.maze import MazeNetwork, channel, ideal_system

LOOPS = ROOT / "configs" / "maze_loops.yaml"
PERFECT = ROOT / "configs" / "maze.yaml"
DEEPTHINKING = [
    "--model.init_args.network=lit_metriplector.networks.DeepThinkingNetwork",
    "--model.init_args.pos_weight=1.0",  # plain BCE, as in Bansal et al. (2022)
    "--trainer.gradient_clip_val=1.0",
]


def train(name: str, config: Path, extra: list[str], steps: int, opts) -> dict:
    start = time.perf_counter()
    fit = cli(
        ["fit", "--config", str(config), *extra]
        + ["--test_after_fit=false", f"--trainer.max_steps={steps}"]
        + [f"--data.init_args.batch_size={opts.batch_size}"]
        + [f"--trainer.default_root_dir={opts.workdir / name.replace(' ', '_')}"]
        + ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    )
    seconds = time.perf_counter() - start
    return {
        "config": str(config.relative_to(ROOT)),
        "arguments": extra,
        "steps": fit.trainer.global_step,
        "train_seconds": seconds,
        "parameters": count_parameters(fit.model.network),
        "checkpoint": fit.trainer.checkpoint_callback.last_model_path,
    }


def solve_iterations(network: torch.nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Front steps and the most CG iterations of one batch (0, 0 for networks without them)."""
    if not isinstance(network, MazeNetwork):
        return 0, 0
    _, reports = network(x, diagnostics=True)
    cg = max(int(r.solve.iterations.max()) for r in reports if r.solve is not None)
    steps = 0
    if network.fronts:
        system = ideal_system(x)
        ends = torch.cat([channel(x, Channel.START), channel(x, Channel.GOAL)], 1)
        _, steps = arrival_times(system.lattice, system.kappa, ends, targets=ends.flip(1))
    return steps, cg


@torch.no_grad()
def evaluate(network: torch.nn.Module, cells: int, loops: float, count: int, batch: int) -> dict:
    mazes = GeneratedMazes(cells, count, "dfs", seed=1, split="benchmark", loops=loops)
    metrics = MetricCollection({"f1": PathF1(), "exact": ExactMatch(), "optimal": OptimalPath()})
    infer = search = 0.0
    fronts, cg = [], []
    for first in range(0, count, batch):
        items = [mazes[i] for i in range(first, min(count, first + batch))]
        x = torch.stack([item["input"] for item in items])
        y = torch.stack([item["target"] for item in items])
        start = time.perf_counter()
        logits, _ = network(x)
        infer += time.perf_counter() - start
        metrics.update(logits, y, maze=x)
        decoded = [decode(m) for m in x.numpy()]
        start = time.perf_counter()
        for m in decoded:
            shortest_paths(m.open, m.start, m.goal)
        search += time.perf_counter() - start
        steps, iterations = solve_iterations(network, x)
        fronts.append(steps)
        cg.append(iterations)
    scores = {k: float(v) for k, v in metrics.compute().items()}
    g = 2 * cells + 1
    return {
        "grid": f"{g}x{g}",
        "loops": loops,
        "mazes": count,
        **scores,
        "ms_per_maze": 1e3 * infer / count,
        "bfs_ms_per_maze": 1e3 * search / count,
        "front_steps": [int(np.min(fronts)), int(np.max(fronts))],
        "cg_iterations": [int(np.min(cg)), int(np.max(cg))],
    }


def markdown(report: dict) -> str:
    lines = [
        "# Mazes with loops: train on 15x15, test on unseen larger mazes",
        "",
        f"{run_line(report)}. Training mazes: 15x15, depth-first search, then a fraction "
        "`loops` of the interior walls knocked out; targets mark every shortest path. Test "
        "mazes come from another seed. Inference on one thread in batches of "
        f"{report['batch_size']}; BFS: `shortest_paths` (two breadth-first searches in plain "
        "Python) on the same mazes in the same run.",
        "",
        "| model | config | parameters | train steps | train time (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in report["models"].items():
        lines.append(
            f"| {name} | `{r['config']}` | {r['parameters']:,} | {r['steps']} | "
            f"{r['train_seconds']:.0f} |"
        )
    lines += [
        "",
        "| model | loops | grid | mazes | exact | optimal | F1 | ms / maze | BFS ms / maze "
        "| ratio | front steps | CG iterations |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, r in report["models"].items():
        for t in r["tests"]:
            ratio = t["ms_per_maze"] / t["bfs_ms_per_maze"]
            lines.append(
                f"| {name} | {t['loops']:g} | {t['grid']} | {t['mazes']} | {t['exact']:.4f} | "
                f"{t['optimal']:.4f} | {t['f1']:.4f} | {t['ms_per_maze']:.2f} | "
                f"{t['bfs_ms_per_maze']:.2f} | {ratio:.1f}x | "
                f"{t['front_steps'][0]}-{t['front_steps'][1]} | "
                f"{t['cg_iterations'][0]}-{t['cg_iterations'][1]} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300, help="Metriplector training steps")
    parser.add_argument("--dt-steps", type=int, nargs="*", default=[300, 1500])
    parser.add_argument("--dt-lr", type=float, default=0.001, help="DeepThinking AdamW lr")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--test-size", type=int, default=1000)
    parser.add_argument("--densities", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.3])
    parser.add_argument("--sizes", type=int, nargs="+", default=[7, 19, 49], help="cells")
    parser.add_argument("--huge", type=int, default=100, help="cells of the 201x201 test")
    parser.add_argument("--huge-loops", type=float, default=0.1)
    parser.add_argument("--huge-size", type=int, default=200, help="mazes at 201x201")
    parser.add_argument("--dt-test-size", type=int, default=250, help="DT mazes from 39x39")
    parser.add_argument("--dt-large-size", type=int, default=64, help="DT mazes above 39x39")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "benchmark_maze")
    opts = parser.parse_args()
    report = {**provenance(), "batch_size": opts.batch_size, "models": {}}
    threads = torch.get_num_threads()
    models = {
        "metriplector": (LOOPS, [], opts.steps),
        "metriplector (perfect)": (PERFECT, [], opts.steps),
    }
    dt = [*DEEPTHINKING, f"--model.init_args.optimizer.init_args.lr={opts.dt_lr}"]
    for steps in opts.dt_steps:
        models[f"deepthinking ({steps} steps)"] = (LOOPS, dt, steps)
    for name, (config, extra, steps) in models.items():
        result = train(name, config, extra, steps, opts)
        print(name, {k: v for k, v in result.items() if k != "arguments"}, flush=True)
        torch.set_num_threads(1)  # tests and timings on one thread
        network = MazeTask.load_from_checkpoint(result["checkpoint"], map_location="cpu")
        network = network.network.eval()
        perfect_only = config == PERFECT
        tests = [(c, d) for d in ([0.0] if perfect_only else opts.densities) for c in opts.sizes]
        tests.append((opts.huge, 0.0 if perfect_only else opts.huge_loops))
        result["tests"] = []
        for cells, loops in tests:
            count = opts.huge_size if cells == opts.huge else opts.test_size
            if name.startswith("deepthinking"):
                if cells == opts.huge:
                    continue  # minutes a maze
                if cells >= 19:  # its eval cost grows with area times iterations
                    count = min(count, opts.dt_test_size if cells == 19 else opts.dt_large_size)
            result["tests"].append(evaluate(network, cells, loops, count, opts.batch_size))
            print(name, result["tests"][-1], flush=True)
        torch.set_num_threads(threads)  # training on all
        report["models"][name] = result
        write_results("maze", report, markdown(report))  # partial results survive a stop


if __name__ == "__main__":
    main()
