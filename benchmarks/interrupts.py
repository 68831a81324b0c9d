"""Kill a fit at a random moment and resume it: it must end with the uninterrupted run's weights.

Each trial starts a small maze fit through the CLI in a fresh folder, sends SIGTERM, SIGINT or
SIGKILL at a random time during training, checks what the stopped process left (its exit status,
that every checkpoint file loads, no partial file), then runs ``fit --ckpt_path last`` with the
same command until the run is complete (from scratch where SIGKILL came before the first
checkpoint) and compares the final weights, bit for bit, with an uninterrupted run's.

    python benchmarks/interrupts.py --trials 10   # per signal -> docs/benchmarks/interrupts.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import DOCS, ROOT, provenance, run_line

STEPS = 200
FIT = [
    sys.executable,
    "-m",
    "lit_metriplector",
    "fit",
    "--config",
    str(ROOT / "configs" / "maze.yaml"),
    "--model.init_args.network.init_args.features=8",
    "--model.init_args.network.init_args.fields=1",
    "--data.init_args.train_cells=4",
    "--data.init_args.val_cells=4",
    "--data.init_args.batch_size=8",
    "--data.init_args.train_size=40",
    "--data.init_args.val_size=8",
    "--trainer.enable_progress_bar=false",
    f"--trainer.max_steps={STEPS}",
    "--trainer.val_check_interval=5",
    "--test_after_fit=false",
]
SIGNALS = {"SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT, "SIGKILL": signal.SIGKILL}
# One thread: the same arithmetic in every process, whatever else the machine runs.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
LAST = Path("runs/maze/checkpoints/last.ckpt")


def run(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*FIT, *extra], cwd=folder, env=ENV, capture_output=True, text=True, timeout=600
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True, map_location="cpu")["state_dict"]


def training_started(folder: Path) -> bool:
    """The first step ran: the logger has written its first scalars."""
    return any((folder / "runs" / "maze").glob("version_*/events.out.*"))


def trial(folder: Path, signum: int, delay: float) -> dict:
    """Stop a fit `delay` seconds into training with `signum`, then resume it to the end."""
    process = subprocess.Popen(
        FIT, cwd=folder, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    while not training_started(folder) and process.poll() is None:
        time.sleep(0.05)
    time.sleep(delay)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=600)
    status = process.returncode
    checkpoints = sorted((folder / "runs" / "maze" / "checkpoints").glob("*"))
    partial = [p.name for p in checkpoints if not p.name.endswith(".ckpt")]
    readable = all(weights(p) is not None for p in checkpoints if p.name.endswith(".ckpt"))
    stopped_at = (
        torch.load(folder / LAST, weights_only=True)["global_step"]
        if (folder / LAST).is_file()
        else None
    )
    resumes = 0
    while True:
        done = (folder / LAST).is_file() and (
            torch.load(folder / LAST, weights_only=True)["global_step"] == STEPS
        )
        if done:
            break
        resumed = run(folder, *(["--ckpt_path", "last"] if (folder / LAST).is_file() else []))
        resumes += 1
        if resumed.returncode != 0 or resumes > 2:
            raise RuntimeError(f"resume failed ({resumed.returncode}): {resumed.stderr[-2000:]}")
    said = [line for line in output.splitlines() if "fit stopped by" in line]
    return {
        "signal": signal.Signals(signum).name,
        "delay_s": round(delay, 2),
        "exit_status": status,
        "checkpoint_step": stopped_at,
        "partial_files": partial,
        "checkpoints_load": readable,
        "message": said[0] if said else "",
        "resumes": resumes,
        "final": weights(folder / LAST),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10, help="trials per signal")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--max_delay", type=float, default=3.0, help="latest kill, s in training")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        reference_dir = Path(scratch) / "uninterrupted"
        reference_dir.mkdir()
        started = time.perf_counter()
        if run(reference_dir).returncode != 0:
            raise RuntimeError("the uninterrupted run failed")
        reference = weights(reference_dir / LAST)
        print(f"uninterrupted run: {time.perf_counter() - started:.1f} s", flush=True)
        results = []
        for name, signum in SIGNALS.items():
            for i in range(args.trials):
                folder = Path(scratch) / f"{name}-{i}"
                folder.mkdir()
                result = trial(folder, signum, rng.uniform(0.0, args.max_delay))
                final = result.pop("final")
                result["same_weights"] = final.keys() == reference.keys() and all(
                    torch.equal(final[k], reference[k]) for k in reference
                )
                results.append(result)
                print(json.dumps(result), flush=True)
    report = {**provenance(), "steps": STEPS, "trials": results}
    (DOCS / "interrupts.json").write_text(json.dumps(report, indent=1) + "\n")
    expected = {"SIGTERM": 143, "SIGINT": 130, "SIGKILL": -9}
    rows = []
    for name in SIGNALS:
        mine = [r for r in results if r["signal"] == name]
        rows.append(
            f"| {name} | {len(mine)} | "
            f"{sum(r['exit_status'] == expected[name] for r in mine)} | "
            f"{sorted(r['checkpoint_step'] or 0 for r in mine)} | "
            f"{sum(r['checkpoints_load'] and not r['partial_files'] for r in mine)} | "
            f"{sum(r['same_weights'] for r in mine)} |"
        )
    (DOCS / "interrupts.md").write_text(
        "# Interrupted fits resume to the uninterrupted weights\n\n"
        + run_line(report)
        + f"\n\nA {STEPS}-step maze fit (checkpoints at every validation, every 5 steps), "
        "stopped at a random moment of training, then resumed with `--ckpt_path last` to the "
        "end. Expected exit status: 143 (SIGTERM), 130 (SIGINT), -9 (SIGKILL, the process "
        "cannot react).\n\n"
        "| signal | trials | expected exit status | step of the checkpoint left | checkpoints "
        "whole, no partial file | final weights bit-identical |\n|---|---:|---:|---|---:|---:|\n"
        + "\n".join(rows)
        + "\n"
    )


if __name__ == "__main__":
    main()
