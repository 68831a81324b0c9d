"""Sudoku test-time compute: exact boards against milliseconds per puzzle, one thread (or a GPU).

Loads a trained checkpoint of ``configs/sudoku.yaml`` (by default the recipe's
``runs/sudoku/checkpoints/last.ckpt``; ``--network-arg`` for one trained with other network
arguments) and tests it on the generated sets the recipe tests (the
same seeds: 36 and 30 givens, minimal and hard 22-25-given puzzles) and on any ``--test-file``:

- depth: one pass of ``--depth`` iterations gives the exact boards after every iteration (the
  time of ``n`` iterations is ``n`` times that pass's time per iteration);
- halting: the same depth with ``halt`` (a puzzle stops once its digits have not changed for that
  many iterations);
- breadth: ``rollouts`` noisy rollouts of each puzzle, the answer the one the model is most
  confident of (its own softmax; the Sudoku rules are never read).

Writes ``docs/benchmarks/sudoku_compute.json``, ``.md`` and ``.png``::

    python benchmarks/sudoku_compute.py                           # about 20 minutes on one core
    python benchmarks/sudoku_compute.py --test-size 20 --depth 8 --breadth-size 10 \\
        --rollouts 2 --name sudoku_compute_smoke                    # a smoke run
    python benchmarks/sudoku_compute.py --config configs/sudoku_gpu.yaml --device cuda \\
        --checkpoint runs/sudoku_gpu/checkpoints/last.ckpt --batch-size 16384  # on a GPU
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import DOCS, ROOT, provenance, run_line, seconds, write_results

from lit_metriplector.cli import build_from_config
from lit_metriplector.datamodules import SudokuDataModule
from lit_metriplector.datamodules.sudoku import set_name
from lit_metriplector.metrics.sudoku import iteration_scores

SETS = ["36", "30", "22-25:minimal", "22-25:hard"]


def load_network(
    checkpoint_path: Path, config: Path, network_args: list[str]
) -> tuple[torch.nn.Module, dict]:
    """The network of ``config`` (with ``NAME=VALUE`` network arguments) holding a checkpoint's
    weights, in eval mode, and the checkpoint."""
    task, _ = build_from_config(
        config, *(f"--model.init_args.network.init_args.{arg}" for arg in network_args)
    )
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    task.load_state_dict(checkpoint["state_dict"])
    return task.network.eval(), checkpoint


def load_sets(opts: argparse.Namespace) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The test sets as the recipe's ``test`` stage builds them (same seeds, same cache)."""
    data = SudokuDataModule(
        test_sets=opts.sets,
        test_size=opts.test_size,
        test_files=[str(f) for f in opts.test_file] or None,
        cache_dir=str(opts.cache_dir),
    )
    data.setup("test")
    return {
        name: (dataset.puzzles, dataset.solutions)
        for name, dataset in zip(data.test_names, data.test_sets, strict=True)
    }


def run(network, puzzles, solutions, batch_size: int, iterations: int) -> tuple[dict, float]:
    """Scores after every iteration and the seconds per puzzle of one ``iterations`` pass (on
    the network's device)."""
    device = next(network.parameters()).device
    logits, spent = [], 0.0
    with torch.no_grad():
        for start in range(0, len(puzzles), batch_size):
            batch = puzzles[start : start + batch_size].long().to(device)
            spent += seconds(
                lambda b=batch: logits.append(network.iterate(b, iterations)[0]), device
            )
    scores = iteration_scores(torch.cat(logits).cpu(), puzzles, solutions)
    return {k: v.tolist() for k, v in scores.items()}, spent / len(puzzles)


def measure(network, sets, opts) -> list[dict]:
    rows = []

    def record(setting: str, name: str, n: int, scores: dict, ms: float, **knobs) -> None:
        row = {"setting": setting, "set": name, "iterations": n, "ms_per_puzzle": ms}
        row.update(exact=scores["exact"][n - 1], cell_accuracy=scores["cell_accuracy"][n - 1])
        rows.append({**row, **knobs})
        print(row, flush=True)

    for name, (puzzles, solutions) in sets.items():
        network.halt, network.rollouts = None, 1
        if not opts.only_breadth:
            scores, seconds = run(network, puzzles, solutions, opts.batch_size, opts.depth)
            for n in (d for d in (8, 16, 32, 64, 128, 256, 512) if d <= opts.depth):
                record("depth", name, n, scores, 1e3 * seconds * n / opts.depth)
            network.halt = opts.halt
            scores, seconds = run(network, puzzles, solutions, opts.batch_size, opts.depth)
            record("halt", name, opts.depth, scores, 1e3 * seconds, halt=opts.halt)
            network.halt = None
        if name not in {set_name(s) for s in opts.breadth_sets}:
            continue
        part = (puzzles[: opts.breadth_size], solutions[: opts.breadth_size])
        network.halt = opts.breadth_halt
        for rollouts in opts.rollouts:
            network.rollouts = rollouts
            scores, seconds = run(network, *part, opts.batch_size // rollouts, opts.breadth_depth)
            knobs = {"rollouts": rollouts, "noise": network.noise, "puzzles": len(part[0])}
            knobs |= {"halt": opts.breadth_halt} if opts.breadth_halt else {}
            record("breadth", name, opts.breadth_depth, scores, 1e3 * seconds, **knobs)
        network.rollouts = 1  # the same puzzles with one rollout, for the comparison
        scores, seconds = run(network, *part, opts.batch_size, opts.breadth_depth)
        record(
            "breadth",
            name,
            opts.breadth_depth,
            scores,
            1e3 * seconds,
            rollouts=1,
            puzzles=len(part[0]),
        )
    return rows


def plot(rows: list[dict], path: Path, where: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, name in enumerate(dict.fromkeys(r["set"] for r in rows)):
        color = f"C{i}"
        depth = [r for r in rows if r["set"] == name and r["setting"] == "depth"]
        ax.plot(
            [r["ms_per_puzzle"] for r in depth],
            [100 * r["exact"] for r in depth],
            "o-",
            color=color,
            label=f"{name}: depth",
        )
        for r in rows:
            if r["set"] == name and r["setting"] == "halt":
                ax.plot(r["ms_per_puzzle"], 100 * r["exact"], "s", color=color, mfc="none")
            if r["set"] == name and r["setting"] == "breadth" and r["rollouts"] > 1:
                ax.plot(r["ms_per_puzzle"], 100 * r["exact"], "^", color=color)
                ax.annotate(
                    f"×{r['rollouts']}",
                    (r["ms_per_puzzle"], 100 * r["exact"]),
                    fontsize=8,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
    ax.set_xscale("log")
    ax.set_xlabel(f"milliseconds per puzzle ({where})")
    ax.set_ylabel("exact boards (%)")
    ax.set_title("depth (dots), halting (open squares), rollouts (triangles)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def where(report: dict) -> str:
    """What the times were measured on: one CPU thread or the GPU."""
    device = report.get("device", "cpu")
    return "one thread" if device == "cpu" else report["machine"]["gpu"]


def markdown(report: dict, name: str) -> str:
    lines = [
        "# Sudoku: exact boards against test-time compute",
        "",
        f"{run_line(report)}. Checkpoint `{report['checkpoint']}` (trained for "
        f"{report['trained_steps']:,} steps); batches of {report['batch_size']} boards on "
        f"{where(report)}. "
        "Exact: the last iteration's digits, givens kept, equal to the solution.",
        "",
        f"![exact boards against milliseconds per puzzle]({name}.png)",
        "",
        *(f"Rows of an earlier run: `{c}`." for c in report["earlier_commands"]),
        "",
        "| set | setting | iterations | knobs | ms / puzzle | exact | cell accuracy |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in report["rows"]:
        knobs = ", ".join(f"{k} {r[k]}" for k in ("halt", "rollouts", "noise", "puzzles") if k in r)
        lines.append(
            f"| {r['set']} | {r['setting']} | {r['iterations']} | {knobs} | "
            f"{r['ms_per_puzzle']:.1f} | {100 * r['exact']:.1f}% | "
            f"{100 * r['cell_accuracy']:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=ROOT / "runs/sudoku/checkpoints/last.ckpt"
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sudoku.yaml")
    parser.add_argument(
        "--network-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a network argument the checkpoint was trained with, e.g. graph=partition",
    )
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--test-file", type=Path, action="append", default=[])
    parser.add_argument("--test-size", type=int, default=1000, help="puzzles per generated set")
    parser.add_argument("--depth", type=int, default=128, help="iterations of the depth pass")
    parser.add_argument("--halt", type=int, default=4)
    parser.add_argument("--rollouts", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--breadth-depth", type=int, default=64)
    parser.add_argument("--breadth-size", type=int, default=500, help="puzzles per breadth run")
    parser.add_argument("--breadth-halt", type=int, help="halt of the breadth runs (none: off)")
    parser.add_argument("--breadth-sets", nargs="+", default=["22-25:minimal", "22-25:hard"])
    parser.add_argument("--noise", type=float, help="initial-field noise of extra rollouts")
    parser.add_argument("--only-breadth", action="store_true", help="skip depth and halting")
    parser.add_argument("--also", type=Path, help="an earlier report's JSON to include")
    parser.add_argument("--batch-size", type=int, default=256, help="boards per batch")
    parser.add_argument("--device", default="cpu", help="e.g. cuda")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data_cache" / "sudoku")
    parser.add_argument("--name", default="sudoku_compute")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    network, checkpoint = load_network(opts.checkpoint, opts.config, opts.network_arg)
    network.to(opts.device)
    if opts.noise is not None:
        network.noise = opts.noise
    rows = measure(network, load_sets(opts), opts)
    if opts.also:  # an earlier run of the same checkpoint, reported in one table with these
        earlier = json.loads(opts.also.read_text())
        rows = earlier["rows"] + rows
        report_commands = [earlier["command"]]
    else:
        report_commands = []
    report = {
        **provenance(),
        "checkpoint": str(opts.checkpoint),
        "trained_steps": checkpoint["global_step"],
        "batch_size": opts.batch_size,
        "device": opts.device,
        "rows": rows,
        "earlier_commands": report_commands,
    }
    plot(rows, DOCS / f"{opts.name}.png", where(report))
    write_results(opts.name, report, markdown(report, opts.name))


if __name__ == "__main__":
    main()
