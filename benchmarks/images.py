"""Image classification: the Metriplector network against its depthwise twin and a WRN.

Three parts, each with its budget on the command line, written to ``docs/benchmarks/images.json``
and ``images.md``::

    python benchmarks/images.py                                  # about 15 minutes, 1 thread
    python benchmarks/images.py --steps 40 --sweep-steps 10 --speed-batch 16 --test-size 500

(a) Fashion-MNIST on this CPU: ``configs/fashion_mnist.yaml`` as the CLI builds it (task,
    network, data and recipe: AdamW, warmup-cosine over the run, label smoothing), its network
    swapped for the ``DepthwiseTwin`` of the same skeleton at equal parameters or a WRN-10-2 of
    about as many parameters, each trained by a ``lightning.Trainer`` for the same steps on the
    same batches (same sampler seed, same augmentation draws): test top-1, training images/s
    (the task's training steps: forward, loss and metrics, backward, optimizer and schedule),
    non-finite losses (the task stops a run at the first, so 0 or 1), and on probe batches every
    ``--probe-every`` steps the fraction of rollout steps with ``dS >= 0`` and with ``dH <= 0``,
    and the energy drift (largest ``|E_t - E_0| / max |H|``; explicit Euler does not conserve
    ``E``).
(b) Euler against strang for 2, 4, 8 and 16 steps per block on Fashion-MNIST (short budget),
    trained as in (a): each at its own stability-capped step size.
(c) The CIFAR-100 configs on synthetic 3x32x32 batches: training and inference images/s of the
    2.25M Metriplector, its twin and WRN-40-2, and the projected wall time of the full recipe
    (``trainer.max_steps`` x batch) on this CPU. No CIFAR-100 files here: its accuracy is not
    measured.

Timing: one thread by default (``--threads``): the 2 cores of the benchmark machine are shared,
and two threads under load measured several times slower than one.

(a) and (b) train through the task and the config as the CLI builds them (before: a loop of
their own that copied the recipe). This version has been run only at its smallest settings, to
show that it works (same parameter counts as before)::

    python benchmarks/images.py --steps 4 --sweep-steps 2 --sweep-rollout 2 --speed-batch 4 \
        --speed-repeats 1 --test-size 200 --probe-every 2 --name images_smoke

The numbers in ``images.md`` were measured with the loop before it.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from common import DOCS, ROOT, provenance, run_line, write_results

from lit_metriplector.cli import build_from_config
from lit_metriplector.core import Grid2D
from lit_metriplector.datamodules import ImageDataModule
from lit_metriplector.errors import DivergenceError
from lit_metriplector.modules.base import MetriplectorTask, count_parameters

CONFIGS = ROOT / "configs"
NETWORK = "--model.init_args.network"
TWIN = f"{NETWORK}=lit_metriplector.networks.DepthwiseTwin"  # keeps the config's ImageConfig
ARCH = f"{NETWORK}.init_args.config"  # the ImageConfig of the Metriplector and of its twin
Tensor = torch.Tensor

# The models of part (a), as changes to configs/fashion_mnist.yaml: its network (grids of 14x14
# after its stride-2 stem), its depthwise twin, a WRN-10-2 at 28x28, or the first two with a
# stride-1 stem (28x28 grids, the WRN's resolution: same parameters, about 4x the compute).
FASHION_MODELS = {
    "metriplector": [],
    "depthwise twin": [TWIN],
    "WRN-10-2": [
        f"{NETWORK}=lit_metriplector.networks.WideResNet",
        f"{NETWORK}.init_args.depth=10",
        f"{NETWORK}.init_args.widen_factor=2",
    ],
    "metriplector 28x28": [f"{ARCH}.stem_stride=1"],
    "depthwise twin 28x28": [TWIN, f"{ARCH}.stem_stride=1"],
}


@torch.no_grad()
def top1(network: torch.nn.Module, data: ImageDataModule, dataset, size: int) -> float:
    """Top-1 of ``network`` on the first ``size`` images of ``dataset``, normalised as the
    DataModule does outside training."""
    network.eval()
    data.augment.eval()
    images, targets = dataset.images[:size], dataset.targets[:size]
    correct = 0
    for i in range(0, len(images), 500):
        batch = data.augment({"input": images[i : i + 500], "target": targets[i : i + 500]})
        correct += int((network(batch["input"])[0].argmax(-1) == batch["target"]).sum())
    return correct / len(images)


@torch.no_grad()
def probe(net: torch.nn.Module, x: Tensor) -> dict[str, list[float]]:
    """Physics of one diagnostics pass: per rollout step, ``dS >= 0`` and ``dH <= 0``; per
    layer, the energy drift and the step size."""
    net.eval()
    _, reports = net(x, diagnostics=True)
    net.train()
    out: dict[str, list[float]] = {"ds_ok": [], "dh_ok": [], "drift": []}
    for report in reports:
        ledger = report.ledger
        h = ledger.hamiltonian
        tolerance = 1e-5 * h.abs().amax(0)
        out["ds_ok"] += (ledger.entropy_production() >= -tolerance).float().flatten().tolist()
        out["dh_ok"] += (h.diff(dim=0) <= tolerance).float().flatten().tolist()
        out["drift"].append(float(ledger.relative_drift().max()))
    return out


class Meter(L.Callback):
    """What a fit of part (a) or (b) measures: seconds and images of the training steps, the
    last loss, and every ``every`` steps (and at the end) the physics of ``probe`` on 8 images
    of the batch, outside the timed steps."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.seconds, self.images, self.loss = 0.0, 0, float("nan")
        self.checks: dict[str, list[float]] = {"ds_ok": [], "dh_ok": [], "drift": []}
        self.batch: dict[str, Tensor] | None = None

    def measure(self, task: MetriplectorTask, batch: dict[str, Tensor]) -> None:
        if hasattr(task.network, "layers"):  # a network with physics
            for key, values in probe(task.network, batch["input"][:8]).items():
                self.checks[key] += values

    def on_train_batch_start(self, trainer, task, batch, batch_idx) -> None:
        if trainer.global_step % self.every == 0:
            self.measure(task, batch)
        self.batch = batch
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self.start
        self.images += len(batch["target"])
        self.loss = float(outputs["loss"])

    def on_train_end(self, trainer, task) -> None:
        self.measure(task, self.batch)


def train(changes: list[str], opts, steps: int, lr: float) -> dict:
    """Train ``configs/fashion_mnist.yaml`` with the command-line ``changes`` for ``steps``
    batches at peak learning rate ``lr`` (the schedule follows both); returns the
    measurements."""
    task, data = build_from_config(
        CONFIGS / "fashion_mnist.yaml",
        *changes,
        f"--trainer.max_steps={steps}",
        f"--model.init_args.optimizer.init_args.lr={lr}",
        f"--data.init_args.batch_size={opts.batch_size}",
        f"--data.init_args.seed={opts.seed}",  # the same batches in the same order
        f"--seed_everything={opts.seed}",
    )
    meter = Meter(opts.probe_every)
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[meter],
    )
    L.seed_everything(opts.seed)  # the same augmentation draws for every model
    nonfinite = 0
    try:
        trainer.fit(task, datamodule=data)
    except DivergenceError as error:
        print(error, flush=True)
        nonfinite = 1
    network = task.network
    data.setup("test")
    result = {
        "parameters": count_parameters(network),
        "steps": trainer.global_step,
        "train_images_per_s": meter.images / meter.seconds if meter.seconds else 0.0,
        "train_seconds": meter.seconds,
        "nonfinite_losses": nonfinite,
        "final_loss": meter.loss,
        "lr": lr,
        # the validation images split from the training set select a learning rate, so that
        # the test set chooses nothing
        "val_top1": top1(network, data, data.val_set, len(data.val_set)),
        "test_top1": top1(network, data, data.test_set, opts.test_size),
    }
    if meter.checks["drift"]:
        checks = meter.checks
        result.update(
            ds_nonnegative=sum(checks["ds_ok"]) / len(checks["ds_ok"]),
            dh_nonpositive=sum(checks["dh_ok"]) / len(checks["dh_ok"]),
            energy_drift=max(checks["drift"]),
            dt=float(network.layers()[0].time_step(Grid2D(8, 8))),
        )
    return result


def part_a(opts) -> list[dict]:
    """Each model of ``--models`` at each peak learning rate of ``--lrs``."""
    sweep = []
    for lr in opts.lrs:
        for name in opts.models:
            result = train(FASHION_MODELS[name], opts, opts.steps, lr)
            sweep.append({"model": name, **result})
            print(name, result, flush=True)
    return sweep


def best_runs(sweep: list[dict]) -> dict:
    """Per model, the run of the sweep with the best validation top-1."""
    best: dict = {}
    for run in sweep:
        if run["model"] not in best or run["val_top1"] > best[run["model"]]["val_top1"]:
            best[run["model"]] = run
    return best


def part_b(opts) -> list[dict]:
    rows = []
    for integrator in ("euler", "strang"):
        for steps in opts.sweep_rollout:
            rollout = [f"{ARCH}.integrator={integrator}", f"{ARCH}.steps={steps}"]
            result = train(rollout, opts, opts.sweep_steps, opts.lr)
            rows.append({"integrator": integrator, "rollout_steps": steps, **result})
            print(integrator, steps, result, flush=True)
    return rows


def speed(net: torch.nn.Module, batch: int, repeats: int, channels: int = 3) -> dict:
    x, y = torch.randn(batch, channels, 32, 32), torch.randint(0, 100, (batch,))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad()
        F.cross_entropy(net(x)[0], y).backward()
        optimizer.step()

    net.train()
    step()
    train_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        train_times.append(time.perf_counter() - start)
    net.eval()
    infer_times = []
    with torch.no_grad():
        net(x)
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            infer_times.append(time.perf_counter() - start)
    return {
        "parameters": count_parameters(net),
        "train_images_per_s": batch / min(train_times),
        "inference_images_per_s": batch / min(infer_times),
    }


def part_c(opts) -> dict:
    recipe = yaml.safe_load((CONFIGS / "cifar100.yaml").read_text())
    total_images = recipe["trainer"]["max_steps"] * recipe["data"]["init_args"]["batch_size"]
    nets = {
        "metriplector (cifar100.yaml)": build_from_config(CONFIGS / "cifar100.yaml")[0].network,
        "depthwise twin": build_from_config(CONFIGS / "cifar100.yaml", TWIN)[0].network,
        "WRN-40-2 (cifar100_wrn.yaml)": build_from_config(CONFIGS / "cifar100_wrn.yaml")[0].network,
    }
    out = {}
    for name, net in nets.items():
        result = speed(net, opts.speed_batch, opts.speed_repeats)
        result["projected_recipe_hours"] = total_images / result["train_images_per_s"] / 3600
        out[name] = result
        print(name, result, flush=True)
    out["recipe_images"] = total_images
    return out


def part_d(opts) -> dict:
    """``configs/fashion_mnist.yaml`` through the CLI, as shipped: wall time and test metrics."""
    from lit_metriplector.cli import main as cli

    args = [
        "fit",
        "--config",
        str(CONFIGS / "fashion_mnist.yaml"),
        "--trainer.enable_progress_bar=false",
    ]
    here = os.getcwd()
    os.makedirs(opts.workdir, exist_ok=True)
    os.chdir(opts.workdir)  # runs/ and checkpoints go there
    try:
        start = time.perf_counter()
        fit = cli(args)
        seconds = time.perf_counter() - start
    finally:
        os.chdir(here)
    metrics = fit.trainer.callback_metrics
    return {
        "command": "python -m lit_metriplector " + " ".join(args),
        "wall_seconds": seconds,
        "steps": fit.trainer.global_step,
        "test_top1": float(metrics["test/top1"]),
        "test_top5": float(metrics["test/top5"]),
    }


def markdown(report: dict) -> str:
    a, b, c = report["fashion_mnist"], report["integrators"], report["cifar100_speed"]
    lines = [
        "# Image benchmark: Metriplector against a depthwise twin and wide ResNets",
        "",
        f"{run_line(report)}; {report['wall_seconds'] / 60:.1f} minutes in all.",
    ]
    if "load_average" in report:
        load = report["load_average"]
        lines += [
            "",
            "The 2 cores are shared with other jobs: load average "
            + " -> ".join(f"{x:.1f}" for x in load)
            + (f" ({report['load_note']})" if "load_note" in report else "")
            + " over the run. Absolute rates move by tens of percent from run to run under such "
            "load; rates in one table were measured one after the other.",
        ]
    if a:
        lines += section_a(report)
    if b:
        lines += section_b(report)
    if c:
        lines += section_c(report)
    if report.get("fashion_mnist_config"):
        d = report["fashion_mnist_config"]
        lines += [
            "",
            "## (d) `configs/fashion_mnist.yaml` as shipped",
            "",
            f"`{d['command']}` ({report['machine']['threads']} thread(s)): {d['steps']} steps, "
            "fit, validation "
            f"and test in {d['wall_seconds'] / 60:.1f} minutes; test top-1 {d['test_top1']:.4f}, "
            f"top-5 {d['test_top5']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def section_a(report: dict) -> list[str]:
    a = report["fashion_mnist"]
    first = next(iter(a.values()))
    lrs = sorted({r["lr"] for r in report.get("lr_sweep", [])}) or [report["lr"]]
    lines = [
        "",
        f"## (a) Fashion-MNIST, {first['steps']} steps of {report['batch_size']} images",
        "",
        "Same batches in the same order (sampler seed and augmentation draws: random crop with "
        "2 pixels of padding, flip), AdamW with warmup-cosine, label smoothing 0.1; peak lr "
        + (
            "chosen per model, among the runs of the sweep below "
            f"({', '.join(map(str, lrs))}), by top-1 on the 5,000 validation images split from "
            "the training set"
            if len(lrs) > 1
            else str(lrs[0])
        )
        + f"; test top-1 on the first {report['test_size']} test images. Physics checks on 8 "
        f"probe images every {report['probe_every']} steps, every block's rollout.",
        "",
        "| model | parameters | peak lr | val top-1 | test top-1 | train images/s "
        "| non-finite losses | steps dS >= 0 | steps dH <= 0 | energy drift |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in a.items():
        lines.append(f"| {name} | {r['parameters']:,} | {row(r, report)} {physics(r)} |")
    if len(lrs) > 1:
        lines += [
            "",
            "Every run of the sweep (the rows above are the best on validation):",
            "",
            "| model | peak lr | val top-1 | test top-1 | train images/s | non-finite losses |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in report["lr_sweep"]:
            lines.append(f"| {r['model']} | {row(r, report)}")
    return lines


def row(r: dict, report: dict) -> str:
    """Peak lr, validation and test top-1, speed and non-finite losses of one run."""
    val = f"{r['val_top1']:.4f}" if "val_top1" in r else "n/a"
    return (
        f"{r.get('lr', report['lr'])} | {val} | {r['test_top1']:.4f} | "
        f"{r['train_images_per_s']:.0f} | {r['nonfinite_losses']} |"
    )


def physics(r: dict) -> str:
    if "ds_nonnegative" not in r:
        return "n/a | n/a | n/a"
    return f"{r['ds_nonnegative']:.3f} | {r['dh_nonpositive']:.3f} | {r['energy_drift']:.3g}"


def section_b(report: dict) -> list[str]:
    lines = [
        "",
        f"## (b) Euler against strang, {report['sweep_steps']} training steps each",
        "",
        "Each at its own step size: the learned `dt`, capped below the integrator's stability "
        "limit (`core.layer.stable_dt`: Euler's guarantees `H` never rises, strang's keeps "
        "leapfrog stable). By construction `dS >= 0` at every step of both; Euler's bound "
        "also makes `dH <= 0` at every step; the energy drift is how far the ledger "
        "`E = H + T0 S` moves, which strang keeps to leapfrog's `O(dt^2)` error and explicit "
        "Euler does not conserve.",
        "",
        "| integrator | rollout steps | dt | test top-1 | train images/s | non-finite "
        "| steps dS >= 0 | steps dH <= 0 | energy drift |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["integrators"]:
        lines.append(
            f"| {r['integrator']} | {r['rollout_steps']} | {r['dt']:.3f} | {r['test_top1']:.4f} | "
            f"{r['train_images_per_s']:.0f} | {r['nonfinite_losses']} | "
            f"{r['ds_nonnegative']:.3f} | {r['dh_nonpositive']:.3f} | {r['energy_drift']:.3g} |"
        )
    return lines


def section_c(report: dict) -> list[str]:
    c = report["cifar100_speed"]
    wrn = c["WRN-40-2 (cifar100_wrn.yaml)"]
    lines = [
        "",
        f"## (c) CIFAR-100 configs, synthetic 3x32x32 batches of {report['speed_batch']}",
        "",
        "Forward, backward and AdamW step (train) and forward (inference), best of "
        f"{report['speed_repeats']}; projected wall time of the full recipe "
        f"({c['recipe_images']:,} training images) on this CPU. CIFAR-100 accuracy is not "
        "measured here: the data set is not on this machine (and the recipe needs a GPU).",
        "",
        "| model | parameters | train images/s | inference images/s | train speed vs WRN-40-2 "
        "| projected recipe (h) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in c.items():
        if name == "recipe_images":
            continue
        ratio = r["train_images_per_s"] / wrn["train_images_per_s"]
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['train_images_per_s']:.1f} | "
            f"{r['inference_images_per_s']:.1f} | {ratio:.2f}x | "
            f"{r['projected_recipe_hours']:.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400, help="(a) training steps per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.003, help="(b) peak learning rate")
    parser.add_argument(
        "--lrs",
        type=float,
        nargs="+",
        default=[0.003],
        help="(a) peak learning rates tried for every model; each keeps its best on validation",
    )
    parser.add_argument(
        "--models", nargs="+", default=list(FASHION_MODELS)[:3], choices=list(FASHION_MODELS)
    )
    parser.add_argument("--test-size", type=int, default=10000, help="test images scored")
    parser.add_argument("--probe-every", type=int, default=50)
    parser.add_argument("--sweep-steps", type=int, default=100, help="(b) steps per run")
    parser.add_argument("--sweep-rollout", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--speed-batch", type=int, default=64, help="(c) batch size")
    parser.add_argument("--speed-repeats", type=int, default=3)
    parser.add_argument(
        "--parts",
        nargs="+",
        default=["a", "b", "c"],
        choices=["a", "b", "c", "d"],
        help="d: the fashion_mnist.yaml fit as shipped (about 10 minutes)",
    )
    parser.add_argument("--workdir", default="/tmp/benchmark_images", help="(d) runs folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="images")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="(a) add these runs to the learning-rate sweep that --name holds (from --lrs runs)",
    )
    parser.add_argument(
        "--render", action="store_true", help="only rewrite the markdown from the JSON"
    )
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    if opts.render:  # rewrite the markdown of an earlier run from its JSON
        report = json.loads((DOCS / f"{opts.name}.json").read_text())
        write_results(opts.name, report, markdown(report))
        return
    # --merge starts from the earlier report: its parts stay unless this run measures them again
    earlier = json.loads((DOCS / f"{opts.name}.json").read_text()) if opts.merge else {}
    report = {
        "fashion_mnist": {},
        "lr_sweep": [],
        "integrators": [],
        "cifar100_speed": {},
        "fashion_mnist_config": {},
        **earlier,
        **provenance(),
        "batch_size": opts.batch_size,
        "lr": opts.lr,
        "test_size": opts.test_size,
        "probe_every": opts.probe_every,
        "sweep_steps": opts.sweep_steps,
        "speed_batch": opts.speed_batch,
        "speed_repeats": opts.speed_repeats,
        "load_average": [os.getloadavg()[0]],
    }
    if earlier:
        report["command"] = f"{earlier['command']}; {report['command']}"
    start = time.perf_counter()
    if "a" in opts.parts:
        report["lr_sweep"] += part_a(opts)
        report["fashion_mnist"] = best_runs(report["lr_sweep"])
    if "b" in opts.parts:
        report["integrators"] = part_b(opts)
    if "c" in opts.parts:
        report["cifar100_speed"] = part_c(opts)
    if "d" in opts.parts:
        report["fashion_mnist_config"] = part_d(opts)
    report["wall_seconds"] = time.perf_counter() - start + earlier.get("wall_seconds", 0)
    report["load_average"].append(os.getloadavg()[0])
    write_results(opts.name, report, markdown(report))


if __name__ == "__main__":
    main()
