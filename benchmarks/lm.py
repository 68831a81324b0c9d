"""Byte-level language modelling: the Metriplector LM against the GPT baseline.

Both models are trained through the shipped configs (``configs/lm.yaml``, ``configs/lm_gpt.yaml``:
matched parameter counts, the same recipe) on the benchmark corpus, with the same data order and
the same number of training bytes, one after the other on the same machine. Records validation
bits/byte against bytes seen, training throughput, and generation speed (``step``, batch 1) at a
short and a long context. Writes ``docs/benchmarks/<name>.json``, ``.md`` and ``.png`` (name
``lm`` unless ``--name`` says otherwise)::

    python benchmarks/lm.py                       # about 30 minutes on 2 CPU cores
    python benchmarks/lm.py --steps 40 --val-every 20 --val-windows 16   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import DOCS, ROOT, provenance, run_line, write_results

from lit_metriplector.cli import main as cli
from lit_metriplector.modules.base import count_parameters

CORPUS = ROOT.parent / "shared" / "data" / "english"
CONFIGS = {"metriplector": "lm.yaml", "gpt": "lm_gpt.yaml"}


def train(name: str, opts: argparse.Namespace) -> dict:
    args = [
        "fit",
        "--config",
        str(ROOT / "configs" / CONFIGS[name]),
        f"--data.init_args.path={opts.corpus}",
        f"--data.init_args.val_windows={opts.val_windows}",
        f"--trainer.max_steps={opts.steps}",
        f"--model.init_args.lr_scheduler.init_args.total_steps={opts.steps}",
        f"--trainer.val_check_interval={opts.val_every}",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={opts.workdir}",
        f"--trainer.logger.name={name}",
        "--trainer.enable_progress_bar=false",
    ]
    start = time.perf_counter()
    fit = cli(args)
    seconds = time.perf_counter() - start
    batch_bytes = fit.datamodule.hparams.batch_size * fit.datamodule.hparams.seq_len
    curve = []
    with open(Path(fit.trainer.logger.log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("val/bpb"):
                # validation inside the epoch is logged at the step count before the last one
                curve.append(((int(row["step"]) + 1) * batch_bytes, float(row["val/bpb"])))
    return {
        "parameters": count_parameters(fit.model.network),
        "steps": fit.trainer.global_step,
        "bytes": fit.trainer.global_step * batch_bytes,
        "train_seconds": seconds,
        "curve": curve,
        "network": fit.model.network,
    }


@torch.no_grad()
def generation_speed(
    network: torch.nn.Module, context: int, new: int = 128, repeats: int = 3
) -> float:
    """Bytes per second of ``step`` at batch 1 after ``context`` bytes of prompt: the median of
    ``repeats`` timings of ``new`` bytes, each after a fresh prompt (single timings of a fraction
    of a second vary by a third on a shared CPU)."""
    network.eval()
    rates = []
    for _ in range(repeats):
        state = network.init_state(1)
        token = torch.zeros(1, dtype=torch.long)
        for _ in range(context):
            _, state = network.step(token, state)
        start = time.perf_counter()
        for _ in range(new):
            logits, state = network.step(token, state)
            token = logits.argmax(-1)
        rates.append(new / (time.perf_counter() - start))
    return statistics.median(rates)


def bytes_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """First byte count at which a curve reaches ``target`` (linear between evaluations)."""
    for (b0, v0), (b1, v1) in zip(curve, curve[1:], strict=False):
        if v1 <= target:
            return b0 + (b1 - b0) * (v0 - target) / (v0 - v1) if v0 > target else b0
    return float(curve[0][0]) if curve and curve[0][1] <= target else None


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in report["models"].items():
        b, v = zip(*r["curve"], strict=True)
        ax.plot(np.array(b) / 1e6, v, marker="o", label=f"{name} ({r['parameters'] / 1e6:.2f}M)")
    ax.set_xlabel("training bytes (millions)")
    ax.set_ylabel("validation bits / byte")
    ax.set_title("Byte LM on the benchmark corpus")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(report: dict) -> str:
    models = report["models"]
    lines = [
        "# Language-model benchmark: Metriplector LM against a GPT baseline",
        "",
        f"{run_line(report)}. Corpus: "
        "`../shared/data/english` (train / val splits); both models see the same batches in the "
        f"same order; validation on {report['val_windows']} fixed windows of 256 bytes.",
        "",
        f"![validation bits/byte against training bytes]({report['name']}.png)",
        "",
        "| model | parameters | training bytes | final val bits/byte | train bytes/s | "
        "generate bytes/s (short) | generate bytes/s (long) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in models.items():
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['bytes']:,} | {r['final_bpb']:.3f} | "
            f"{r['train_bytes_per_s']:.0f} | {r['generate_short']:.0f} | {r['generate_long']:.0f} |"
        )
    reach = report["metriplector_bytes_to_gpt_final"]
    lines += [
        "",
        f"Generation: batch 1, after {report['short_context']} (short) and "
        f"{report['long_context']} (long) bytes of context. The GPT's context window is 256 "
        "bytes; beyond it, it recomputes the window for every byte.",
        "",
        "Bytes the Metriplector LM needs to reach the GPT's final validation bits/byte: "
        + (
            "not reached"
            if reach is None
            else f"{reach:,.0f}, i.e. {reach / models['gpt']['bytes']:.2f} of the GPT's bytes "
            f"({models['gpt']['bytes'] / reach:.1f}x fewer)."
        ),
        "",
        "| bytes seen | " + " | ".join(models) + " |",
        "|---:|" + "---:|" * len(models),
    ]
    curves = {name: dict(r["curve"]) for name, r in models.items()}
    for b in sorted(set().union(*curves.values())):
        lines.append(
            f"| {b:,} | "
            + " | ".join(f"{curves[n][b]:.3f}" if b in curves[n] else "" for n in models)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="training steps (16 x 256 bytes)")
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--val-windows", type=int, default=256)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--short-context", type=int, default=16)
    parser.add_argument("--long-context", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--name", default="lm", help="results file name in docs/benchmarks/")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "benchmark_lm")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    report = {
        **provenance(),
        "name": opts.name,
        "val_windows": opts.val_windows,
        "short_context": opts.short_context,
        "long_context": opts.long_context,
        "models": {},
    }
    for name in CONFIGS:
        r = train(name, opts)
        network = r.pop("network")
        r["final_bpb"] = r["curve"][-1][1]
        r["train_bytes_per_s"] = r["bytes"] / r["train_seconds"]
        r["generate_short"] = generation_speed(network, opts.short_context)
        r["generate_long"] = generation_speed(network, opts.long_context)
        report["models"][name] = r
        print(name, {k: v for k, v in r.items() if k != "curve"}, flush=True)
    gpt_final = report["models"]["gpt"]["final_bpb"]
    report["metriplector_bytes_to_gpt_final"] = bytes_to_reach(
        report["models"]["metriplector"]["curve"], gpt_final
    )
    DOCS.mkdir(parents=True, exist_ok=True)
    plot(report, DOCS / f"{opts.name}.png")
    write_results(opts.name, report, markdown(report))


if __name__ == "__main__":
    main()
