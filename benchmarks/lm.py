"""Byte-level language modelling: the Metriplector LM against three baselines.

Models (``--models``), each trained through its shipped config (matched parameter counts, the
same recipe, the same data order)::

    metriplector       configs/lm.yaml, plain      damped oscillator modes (+ changes: see FEATURES)
    gpt                configs/lm_gpt.yaml         nanoGPT-style transformer
    modern_gpt         configs/lm_modern_gpt.yaml  RMSNorm, rotary positions, SwiGLU, no biases
    modern_gpt_untied  the same, untied output layer (the MLP trimmed to the same count)
    lru                configs/lm_lru.yaml         diagonal complex recurrence, no physics

Three modes, each writing ``docs/benchmarks/<name>.json``, ``.md`` and (training modes) ``.png``:

- comparison (default, name ``lm``): train every model, validation bits/byte against bytes seen,
  and the bytes the Metriplector LM needs to reach the strongest baseline's final value;
- ``--lr-sweep LR [LR ...]`` (name ``lm_sweep``): train every model at every peak learning rate
  (optimizer ``lr`` and OneCycle ``max_lr``) and tabulate the final bits/byte;
- ``--speed`` (name ``lm_speed``): no training; at the configs' sizes, training bytes/s
  (forward, backward and AdamW on 16 x 256 bytes) and generation bytes/s at batch 1 after short
  and long contexts, the models interleaved in one process so that a shared CPU's load hits all
  alike; ``--step-before REV`` adds the Metriplector ``step`` of git revision ``REV``.

``--ablation`` (name ``lm_ablation``) reports ``--models`` as changes stacked on the Metriplector
LM, each against the row it extends: ``metriplector+conv``, ``metriplector+conv+input``, ... (see
``FEATURES``).

Every run keeps its result in ``--workdir`` (``<model>_lr<lr>_<steps>.json``); ``--report-only``
rebuilds a report from the runs there, so runs may be split over processes. A run that was cut
off (its folder ``<model>_lr<lr>_<steps>/`` holds a ``last.ckpt`` but no result file exists) is
resumed from that checkpoint; the data order makes the resumed run the one that was cut off::

    python benchmarks/lm.py --steps 1000 --val-every 100          # about 30 min a model, 2 cores
    python benchmarks/lm.py --lr-sweep 0.001 0.002 0.004 --steps 100 --models metriplector
    python benchmarks/lm.py --speed --threads 1 --step-before HEAD
    python benchmarks/lm.py --steps 40 --val-every 20 --val-windows 16   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import DOCS, ROOT, command, provenance, run_line, write_results

from lit_metriplector.checkpoints import read_checkpoint
from lit_metriplector.cli import build_from_config
from lit_metriplector.cli import main as cli
from lit_metriplector.modules.base import count_parameters

CORPUS = ROOT.parent / "shared" / "data" / "english"
NET = "--model.init_args.network.init_args."
# The plain Metriplector LM: configs/lm.yaml without its selective modes and gate (the changes
# below stack on it; "metriplector+input+wider+gate" is lm.yaml as shipped).
PLAIN = [
    f"{NET}input_friction=false",
    f"{NET}modes=192",
    f"{NET}mlp_ratio=2.0",
    f"{NET}gate=false",
]
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "metriplector": ("lm.yaml", PLAIN),
    "gpt": ("lm_gpt.yaml", []),
    "modern_gpt": ("lm_modern_gpt.yaml", []),
    "modern_gpt_untied": (
        "lm_modern_gpt.yaml",
        [f"{NET}tie_weights=false", f"{NET}mlp_ratio=2.568"],
    ),
    "lru": ("lm_lru.yaml", []),
}
LABELS = {
    "metriplector": "Metriplector LM",
    "gpt": "GPT (nanoGPT)",
    "modern_gpt": "modern GPT",
    "modern_gpt_untied": "modern GPT, untied head",
    "lru": "LRU (no physics)",
}
# Changes to the Metriplector LM, stacked on ``metriplector`` as ``metriplector+conv+input``;
# "input" trims the MLP (hidden 384 -> 320) to pay for its larger heads: parameters stay within 1%.
FEATURES: dict[str, tuple[str, list[str]]] = {
    "conv": ("4-byte causal convolution", [f"{NET}conv=4"]),
    "input": (
        "input-dependent frictions",
        [f"{NET}input_friction=true", f"{NET}mlp_ratio=1.6667"],
    ),
    "coupling": ("rotation coupling pairs of modes", [f"{NET}coupling=true"]),
    # Speed only (the same numbers): lm.yaml compiles (MetriplectorLM.compile fuses each block's
    # element-wise kernels); the baselines' configs do not (nn.Module.compile: the whole network).
    "eager": ("not compiled", ["--model.init_args.compile=false"]),
    "compiled": ("compiled", ["--model.init_args.compile=true"]),
    # Other splits of the same parameters (each sets mlp_ratio: not to be stacked with "input").
    "deep": (
        "6 layers of width 160, 160 modes",
        [f"{NET}layers=6", f"{NET}width=160", f"{NET}modes=160", f"{NET}mlp_ratio=1.8"],
    ),
    "modes": ("288 modes, MLP hidden 192", [f"{NET}modes=288", f"{NET}mlp_ratio=1.0"]),
    # The same trade for a model with "input" (stacked after it: its MLP ratio wins).
    "wide": ("240 modes, MLP hidden 201", [f"{NET}modes=240", f"{NET}mlp_ratio=1.05"]),
    "wider": ("288 modes, MLP hidden 96", [f"{NET}modes=288", f"{NET}mlp_ratio=0.5"]),
    "widest": ("320 modes, MLP hidden 19", [f"{NET}modes=320", f"{NET}mlp_ratio=0.1"]),
    # After "wider": the gate's width x width weights come out of the MLP (hidden 96 -> 32).
    "gate": (
        "readout gated by the input, MLP hidden 32",
        [f"{NET}gate=true", f"{NET}mlp_ratio=0.1667"],
    ),
}
BATCH = (16, 256)  # the configs' batch_size and seq_len


def parse(name: str) -> tuple[str, list[str]]:
    """``"metriplector+conv+input"`` -> ``("metriplector", ["conv", "input"])``."""
    base, *features = name.split("+")
    return base, features


def config_of(name: str) -> tuple[str, list[str]]:
    """Config file and overrides of a model name (a baseline, or the Metriplector + features)."""
    base, features = parse(name)
    config, extra = CONFIGS[base]
    return config, extra + [arg for f in features for arg in FEATURES[f][1]]


def label(name: str) -> str:
    base, features = parse(name)
    return " + ".join([LABELS[base], *(FEATURES[f][0] for f in features)])


def config_lr(name: str) -> float:
    import yaml

    config = yaml.safe_load((ROOT / "configs" / config_of(name)[0]).read_text())
    return float(config["model"]["init_args"]["optimizer"]["init_args"]["lr"])


def run_file(opts: argparse.Namespace, name: str, lr: float) -> Path:
    return opts.workdir / f"{name}_lr{lr:g}_{opts.steps}.json"


def last_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(run_dir.glob("runs/*/checkpoints/last.ckpt"))
    return found[0] if found else None


def run_time(run: dict) -> str:
    """Seconds of the run, or of its resumed part."""
    step = run.get("resumed_from_step")
    return f"{run['train_seconds']:.0f}" + (f" (from step {step})" if step else "")


def read_curve(run_dir: Path, batch_bytes: int) -> list[tuple[int, float]]:
    """Validation bits/byte against bytes seen, over every logger version (a resumed run's later
    versions continue the earlier ones)."""
    points = {}
    versions = sorted(run_dir.glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    for path in versions:
        with open(path) as f:
            for row in csv.DictReader(f):
                if row.get("val/bpb"):
                    # validation inside the epoch is logged at the step count before the last one
                    points[(int(row["step"]) + 1) * batch_bytes] = float(row["val/bpb"])
    return sorted(points.items())


def train(name: str, lr: float, opts: argparse.Namespace) -> dict:
    """Train ``name`` at peak learning rate ``lr`` for ``opts.steps`` steps, or resume it from the
    checkpoint a cut-off run left; the result is also kept in ``opts.workdir``."""
    config, extra = config_of(name)
    tag = f"{name}_lr{lr:g}"
    run_dir = opts.workdir / f"{tag}_{opts.steps}"
    run_dir.mkdir(exist_ok=True)
    os.chdir(run_dir)  # the configs' checkpoint and prediction folders are relative
    resume = last_checkpoint(run_dir)
    args = [
        "fit",
        "--config",
        str(ROOT / "configs" / config),
        *extra,
        f"--model.init_args.optimizer.init_args.lr={lr}",  # the schedule's peak
        f"--data.init_args.path={opts.corpus}",
        f"--data.init_args.val_windows={opts.val_windows}",
        f"--trainer.max_steps={opts.steps}",  # and the schedule's length
        f"--trainer.val_check_interval={opts.val_every}",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={opts.workdir}",
        f"--trainer.logger.name={run_dir.name}",
        "--trainer.enable_progress_bar=false",
    ]
    if opts.test_windows:
        args += [f"--data.init_args.test_windows={opts.test_windows}", "--test_after_fit=true"]
    if resume:
        args.append(f"--ckpt_path={resume}")
        print(f"{tag}: resuming from {resume}", flush=True)
    resumed_from = read_checkpoint(resume)["global_step"] if resume else 0
    start = time.perf_counter()
    fit = cli(args)
    seconds = time.perf_counter() - start
    batch_bytes = fit.datamodule.hparams.batch_size * fit.datamodule.hparams.seq_len
    curve = read_curve(run_dir, batch_bytes)
    result = {
        "model": name,
        "lr": lr,
        "parameters": count_parameters(fit.model.network),
        "steps": fit.trainer.global_step,
        "bytes": fit.trainer.global_step * batch_bytes,
        "train_seconds": seconds,
        "resumed_from_step": resumed_from,
        "curve": curve,
        "final_bpb": curve[-1][1],
        "test_bpb": float(fit.trainer.callback_metrics["test/bpb"]) if opts.test_windows else None,
        "command": command(),
    }
    run_file(opts, name, lr).write_text(json.dumps(result, indent=1) + "\n")
    print(tag, {k: v for k, v in result.items() if k != "curve"}, flush=True)
    return result


def load_runs(opts: argparse.Namespace) -> list[dict]:
    runs = [json.loads(p.read_text()) for p in sorted(opts.workdir.glob(f"*_{opts.steps}.json"))]
    order = {name: i for i, name in enumerate(opts.models)}
    return sorted((r for r in runs if r["model"] in order), key=lambda r: order[r["model"]])


# --- speed --------------------------------------------------------------------------------------


def build(name: str) -> torch.nn.Module:
    """The network of a model's config (untrained; speed does not depend on the weights),
    compiled as ``fit`` would compile it."""
    config, extra = config_of(name)
    model = build_from_config(ROOT / "configs" / config, *extra)[0]
    model.configure_model()
    return model.network


def load_step_before(rev: str) -> type:
    """``MetriplectorLM`` as it was at git revision ``rev`` (for the generation speed before)."""
    source = subprocess.run(
        ["git", "show", f"{rev}:lit_metriplector/networks/lm.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "lm_before.py"
    path.write_text(source)
    name = "lit_metriplector.networks._lm_before"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.MetriplectorLM


def train_step_seconds(networks: dict[str, torch.nn.Module], rounds: int, steps: int) -> dict:
    """Median seconds of a training step (forward, backward, AdamW) on one random batch, the
    models taking turns ``rounds`` times, ``steps`` steps each turn."""
    g = torch.Generator().manual_seed(0)
    batch = torch.randint(256, (BATCH[0], BATCH[1] + 1), generator=g)
    optimizers = {n: torch.optim.AdamW(m.parameters(), lr=1e-4) for n, m in networks.items()}
    times: dict[str, list[float]] = {n: [] for n in networks}

    def one(name: str) -> None:
        network = networks[name]
        logits = network(batch[:, :-1])[0]
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad()

    for name in networks:  # warm-up
        networks[name].train()
        one(name)
    for _ in range(rounds):
        for name in networks:
            start = time.perf_counter()
            for _ in range(steps):
                one(name)
            times[name].append((time.perf_counter() - start) / steps)
    return {n: statistics.median(t) for n, t in times.items()}


@torch.no_grad()
def generation_speeds(
    networks: dict[str, torch.nn.Module], context: int, new: int = 128, repeats: int = 3
) -> dict[str, float]:
    """Bytes per second of ``step`` at batch 1 after ``context`` bytes, per network: each is fed
    the context, then they take turns timing ``new`` bytes, ``repeats`` times; the median (single
    timings of a fraction of a second vary by a third on a shared CPU, so the turns make a
    changing load hit all networks alike)."""
    states, tokens = {}, {}
    for name, network in networks.items():
        network.eval()
        state, token = network.init_state(1), torch.zeros(1, dtype=torch.long)
        for _ in range(context):
            _, state = network.step(token, state)
        states[name], tokens[name] = state, token
    rates: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(repeats):
        for name, network in networks.items():
            state, token = states[name], tokens[name]
            start = time.perf_counter()
            for _ in range(new):
                logits, state = network.step(token, state)
                token = logits.argmax(-1)
            rates[name].append(new / (time.perf_counter() - start))
            states[name], tokens[name] = state, token
    return {name: statistics.median(r) for name, r in rates.items()}


def speed(opts: argparse.Namespace) -> None:
    names = [n for n in opts.models if n != "modern_gpt_untied"]
    torch.manual_seed(0)
    networks = {n: build(n) for n in names}
    report = {
        **provenance(),
        "name": opts.name,
        "batch": BATCH,
        "contexts": opts.contexts,
        "models": {n: {"parameters": count_parameters(m)} for n, m in networks.items()},
    }
    if opts.rounds:
        seconds = train_step_seconds(networks, opts.rounds, 2)
        for n, s in seconds.items():
            report["models"][n]["train_bytes_per_s"] = BATCH[0] * BATCH[1] / s
    if opts.step_before:
        before = load_step_before(opts.step_before)()
        before.load_state_dict(networks["metriplector"].state_dict())
        networks["metriplector_before"] = before
        report["step_before"] = opts.step_before
        report["models"]["metriplector_before"] = {"parameters": count_parameters(before)}
    for context in opts.contexts:
        # the GPT recomputes its window at every byte past it: minutes at long contexts
        timed = {n: m for n, m in networks.items() if n != "gpt" or context <= 1024}
        for n, rate in generation_speeds(timed, context).items():
            report["models"][n][f"generate_{context}"] = rate
            print(n, context, f"{rate:.0f} bytes/s", flush=True)
    write_results(opts.name, report, speed_markdown(report))


def speed_markdown(report: dict) -> str:
    models, contexts = report["models"], report["contexts"]
    ref = models["metriplector"].get("train_bytes_per_s")
    lines = [
        "# Language-model speed: training and generation throughput",
        "",
        f"{run_line(report)}. Untrained networks at the configs' sizes; the models take turns "
        "in one process (a shared CPU's load hits all alike). Training: forward, backward and "
        f"AdamW on {report['batch'][0]} x {report['batch'][1]} bytes, median of the turns. "
        "Generation: `step` at batch 1 after the given context, the models taking turns timing "
        "128 bytes, median of 3 turns.",
        "",
        "| model | parameters | train bytes/s | vs Metriplector | "
        + " | ".join(f"generate bytes/s, {c}-byte context" for c in contexts)
        + " |",
        "|---|---:|---:|---:|" + "---:|" * len(contexts),
    ]
    for n, r in models.items():
        train_rate = r.get("train_bytes_per_s")
        cells = [
            f"{train_rate:.0f}" if train_rate else "",
            f"{train_rate / ref:.2f}" if train_rate and ref else "",
        ]
        cells += [f"{r[f'generate_{c}']:.0f}" if f"generate_{c}" in r else "—" for c in contexts]
        before = n == "metriplector_before"
        name = f"Metriplector LM, `step` of {report.get('step_before')}" if before else label(n)
        lines.append(f"| {name} | {r['parameters']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- training reports ---------------------------------------------------------------------------


def bytes_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """First byte count at which a curve reaches ``target`` (linear between evaluations)."""
    for (b0, v0), (b1, v1) in zip(curve, curve[1:], strict=False):
        if v1 <= target:
            return b0 + (b1 - b0) * (v0 - target) / (v0 - v1) if v0 > target else b0
    return float(curve[0][0]) if curve and curve[0][1] <= target else None


def plot_curves(panels: dict[str, list[dict]], path: Path, title: str, key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (panel, runs) in zip(axes[0], panels.items(), strict=True):
        for r in runs:
            b, v = zip(*r["curve"], strict=True)
            ax.plot(np.array(b) / 1e6, v, marker="o", markersize=3, label=r[key])
        ax.set_xlabel("training bytes (millions)")
        ax.set_ylabel("validation bits / byte")
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def sweep_report(opts: argparse.Namespace, runs: list[dict]) -> None:
    lrs = sorted({r["lr"] for r in runs})
    by_model: dict[str, dict[float, dict]] = {}
    for r in runs:
        by_model.setdefault(r["model"], {})[r["lr"]] = r
    report = {
        **provenance(),
        "name": opts.name,
        "steps": opts.steps,
        "val_windows": opts.val_windows,
        "runs": runs,
        "best_lr": {
            m: min(rs.values(), key=lambda r: r["final_bpb"])["lr"] for m, rs in by_model.items()
        },
    }
    lines = [
        "# Language-model learning-rate sweep",
        "",
        f"{run_line(report)}. Corpus `../shared/data/english`; every run {opts.steps} steps of "
        f"{BATCH[0]} x {BATCH[1]} bytes ({opts.steps * BATCH[0] * BATCH[1]:,} bytes) through its "
        "config, the same data order, OneCycle to the peak learning rate (optimizer `lr` and "
        f"`max_lr` alike) after 5% warm-up; validation on {opts.val_windows} fixed windows. "
        "Final validation bits/byte; the best of each row in bold.",
        "",
        f"![validation bits/byte against training bytes]({opts.name}.png)",
        "",
        "| model | parameters | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |",
        "|---|---:|" + "---:|" * len(lrs),
    ]
    for m, rs in by_model.items():
        best = report["best_lr"][m]
        cells = []
        for lr in lrs:
            if lr not in rs:
                cells.append("—")
            else:
                value = f"{rs[lr]['final_bpb']:.3f}"
                cells.append(f"**{value}**" if lr == best else value)
        parameters = next(iter(rs.values()))["parameters"]
        lines.append(f"| {label(m)} | {parameters:,} | " + " | ".join(cells) + " |")
    lines += ["", "Run times (s, including validation; runs shared the CPU):", ""]
    for m, rs in by_model.items():
        times = ", ".join(f"lr {lr:g}: {r['train_seconds']:.0f}" for lr, r in sorted(rs.items()))
        lines.append(f"- {label(m)}: {times}")
    lines += ["", "The runs came from:", ""]
    lines += [f"- `{c}`" for c in dict.fromkeys(r.get("command", "?") for r in runs)]
    panels = {
        label(m): [dict(r, lr=f"lr {r['lr']:g}") for _, r in sorted(rs.items())]
        for m, rs in by_model.items()
    }
    plot_curves(panels, DOCS / f"{opts.name}.png", "Learning-rate sweep", "lr")
    write_results(opts.name, report, "\n".join(lines) + "\n")


def comparison_report(opts: argparse.Namespace, runs: list[dict]) -> None:
    models = {r["model"]: r for r in runs}
    ours = {m: r for m, r in models.items() if parse(m)[0] == "metriplector"}
    baselines = {m: r for m, r in models.items() if m not in ours}
    strongest = min(baselines, key=lambda m: baselines[m]["final_bpb"]) if baselines else None
    report = {
        **provenance(),
        "name": opts.name,
        "val_windows": opts.val_windows,
        "models": models,
        "strongest_baseline": strongest,
    }
    lines = [
        "# Language-model benchmark: the Metriplector LM against the baselines",
        "",
        f"{run_line(report)}. Corpus `../shared/data/english` (train / val splits); every model "
        "sees the same batches in the same order, OneCycle over the run at its peak learning "
        f"rate; validation on {opts.val_windows} fixed windows of 256 bytes"
        + (
            f", test after training on {opts.test_windows} evenly spaced windows of the test split."
            if opts.test_windows
            else "."
        ),
        "",
        f"![validation bits/byte against training bytes]({opts.name}.png)",
        "",
        "| model | parameters | peak lr | training bytes | final val bits/byte | test bits/byte "
        "| run time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m, r in models.items():
        test = f"{r['test_bpb']:.3f}" if r.get("test_bpb") is not None else "—"
        lines.append(
            f"| {label(m)} | {r['parameters']:,} | {r['lr']:g} | {r['bytes']:,} | "
            f"{r['final_bpb']:.3f} | {test} | {run_time(r)} |"
        )
    if strongest and ours:
        report["bytes_to_final"] = {}
        lines += ["", f"Strongest baseline: {label(strongest)}. Bytes each Metriplector model "]
        lines[-1] += "needs to reach each baseline's final validation bits/byte (linear between "
        lines[-1] += "evaluations; the first evaluation bounds it from above):"
        for o, mine in ours.items():
            lines += ["", f"{label(o)}:", ""]
            report["bytes_to_final"][o] = {}
            for m, r in baselines.items():
                reach = bytes_to_reach(mine["curve"], r["final_bpb"])
                report["bytes_to_final"][o][m] = reach
                lines.append(
                    f"- {label(m)} ({r['final_bpb']:.3f} after {r['bytes']:,} bytes): "
                    + (
                        "not reached."
                        if reach is None
                        else f"{reach:,.0f}, i.e. **{reach / r['bytes']:.2f}** of its bytes."
                    )
                )
    lines += ["", "| bytes seen | " + " | ".join(label(m) for m in models) + " |"]
    lines.append("|---:|" + "---:|" * len(models))
    curves = {m: dict(r["curve"]) for m, r in models.items()}
    for b in sorted(set().union(*curves.values())):
        cells = [f"{curves[m][b]:.3f}" if b in curves[m] else "" for m in models]
        lines.append(f"| {b:,} | " + " | ".join(cells) + " |")
    lines += ["", "The runs came from:", ""]
    lines += [f"- `{c}`" for c in dict.fromkeys(r.get("command", "?") for r in runs)]
    # the legend names the models as --models does; the tables spell them out
    panel = [dict(r, label=f"{m} (lr {r['lr']:g})") for m, r in models.items()]
    plot_curves({"byte LM, validation": panel}, DOCS / f"{opts.name}.png", "", "label")
    write_results(opts.name, report, "\n".join(lines) + "\n")


def ablation_report(opts: argparse.Namespace, runs: list[dict]) -> None:
    """Each change to the Metriplector LM against the row before it, on one budget."""
    report = {**provenance(), "name": opts.name, "steps": opts.steps, "runs": runs}
    lines = [
        "# Changes to the Metriplector LM, one at a time",
        "",
        f"{run_line(report)}. Each row adds one change to a row above it (named in the "
        f"model column); {opts.steps} steps of {BATCH[0]} x {BATCH[1]} bytes "
        f"({opts.steps * BATCH[0] * BATCH[1]:,} bytes), `configs/lm.yaml`'s recipe, the same data "
        f"order, validation on {opts.val_windows} fixed windows.",
        "",
        f"![validation bits/byte against training bytes]({opts.name}.png)",
        "",
        "| model | parameters | peak lr | final val bits/byte | change against the row it extends |"
        " run time (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    finals = {r["model"]: r["final_bpb"] for r in runs}
    for r in runs:
        parent = r["model"].rpartition("+")[0]
        delta = f"{r['final_bpb'] - finals[parent]:+.3f}" if parent in finals else ""
        lines.append(
            f"| {label(r['model'])} | {r['parameters']:,} | {r['lr']:g} | {r['final_bpb']:.3f} "
            f"| {delta} | {r['train_seconds']:.0f} |"
        )
    lines += ["", "The runs came from:", ""]
    lines += [f"- `{c}`" for c in dict.fromkeys(r.get("command", "?") for r in runs)]
    panel = [dict(r, label=r["model"]) for r in runs]
    plot_curves({"byte LM, validation": panel}, DOCS / f"{opts.name}.png", "", "label")
    write_results(opts.name, report, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["metriplector", "gpt", "modern_gpt", "lru"])
    parser.add_argument("--steps", type=int, default=1000, help="training steps (16 x 256 bytes)")
    parser.add_argument("--val-every", type=int, default=100)
    parser.add_argument("--val-windows", type=int, default=256)
    parser.add_argument(
        "--test-windows", type=int, default=0, help="test windows after training (0: no test)"
    )
    parser.add_argument("--lr", nargs="*", default=[], metavar="MODEL=LR", help="peak lr per model")
    parser.add_argument("--lr-sweep", nargs="+", type=float, metavar="LR")
    parser.add_argument("--report-only", action="store_true", help="report the runs in --workdir")
    parser.add_argument(
        "--ablation", action="store_true", help="report --models as changes to the Metriplector"
    )
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--contexts", nargs="+", type=int, default=[16, 256, 4096])
    parser.add_argument(
        "--rounds", type=int, default=5, help="turns of the training timing (0: none)"
    )
    parser.add_argument("--step-before", metavar="REV", help="also time this revision's step")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--name", help="results file name in docs/benchmarks/")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "benchmark_lm")
    opts = parser.parse_args()
    sys.argv[0] = str(Path(sys.argv[0]).resolve())  # the command in reports, after the chdir
    torch.set_num_threads(opts.threads)
    modes = {"lm_speed": opts.speed, "lm_sweep": opts.lr_sweep, "lm_ablation": opts.ablation}
    opts.name = opts.name or next((name for name, on in modes.items() if on), "lm")
    DOCS.mkdir(parents=True, exist_ok=True)
    if opts.speed:
        return speed(opts)
    opts.workdir = opts.workdir.resolve()
    opts.workdir.mkdir(parents=True, exist_ok=True)
    if not opts.report_only:
        lrs = dict(item.split("=") for item in opts.lr)
        for name in opts.models:
            for lr in opts.lr_sweep or [float(lrs.get(name, config_lr(name)))]:
                train(name, lr, opts)
    runs = load_runs(opts)
    if opts.lr_sweep:
        sweep_report(opts, [r for r in runs if r["lr"] in opts.lr_sweep])
    else:
        lrs = {k: float(v) for k, v in (item.split("=") for item in opts.lr)}
        chosen = {n: lrs.get(n, config_lr(n)) for n in opts.models}
        report = ablation_report if opts.ablation else comparison_report
        report(opts, [r for r in runs if r["lr"] == chosen[r["model"]]])


if __name__ == "__main__":
    main()
