"""The fused grid backend moved into the core: speed before and after, side by side.

Runs the image networks of the shipped configs (Fashion-MNIST, CIFAR-100) for training steps
(forward and backward) and inference, alternating between this checkout and an earlier one (a
``git worktree`` of the commit before the move), one thread, each measurement in a fresh
process; then a user's own ``MetriplectorLayer`` on a 32x32 grid, through ``forward`` (which
now takes the fused backend) and through ``forward_generic`` (the path such a layer took
before).

    git worktree add /tmp/before <commit before the move>
    python benchmarks/grid_backend.py --before /tmp/before   # -> docs/benchmarks/grid_backend.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import DOCS, ROOT, provenance, run_line

# One measurement, run in a fresh process with the checkout to measure first on sys.path.
MEASURE = r"""
import sys, time, json, torch, yaml
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
from lit_metriplector.networks import ImageMetriplector
config, batch, mode, reps = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
# read as YAML: the earlier checkout has no build_from_config; the configs no longer state the
# sizes that the CLI links from the data
args = yaml.safe_load(open(config))["model"]["init_args"]["network"]["init_args"]["config"]
size = 28 if "fashion" in config else 32
channels = 1 if size == 28 else 3
torch.manual_seed(0)
try:  # the architecture as one ImageConfig; an earlier checkout takes it as keywords
    from lit_metriplector.networks import ImageConfig
    net = ImageMetriplector(channels, 10, ImageConfig(**args))
except ImportError:
    net = ImageMetriplector(channels, 10, **args)
x = torch.randn(batch, channels, size, size)
def step():
    if mode == "train":
        net.train(); net(x)[0].square().mean().backward()
    else:
        net.eval()
        with torch.no_grad(): net(x)
step()
start = time.perf_counter()
for _ in range(reps): step()
print(json.dumps(batch * reps / (time.perf_counter() - start)))
"""

USER_LAYER = r"""
import sys, time, json, torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(1)
from lit_metriplector.core import Grid2D, Parametrization, MetriplectorLayer, Rollout
torch.manual_seed(0)
bounds = Parametrization(edge_rank=2, max_rate=1.0, min_damping=0.5)
layer = MetriplectorLayer(64, dim=2, fields=8, dynamics=Rollout(steps=4), parametrization=bounds)
x = torch.randn(16, 64, 32, 32, requires_grad=True)
grid = Grid2D(32, 32)
run = {"forward": layer, "forward_generic": layer.forward_generic}[sys.argv[2]]
def step():
    y, _ = run(x, grid)
    y.square().mean().backward()
step()
start = time.perf_counter()
for _ in range(3): step()
print(json.dumps(16 * 3 / (time.perf_counter() - start)))
"""


def measure(script: str, *args: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout before the move")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per measurement")
    args = parser.parse_args()
    rows = []
    cases = [
        ("fashion_mnist.yaml", 32, "train", 3),
        ("fashion_mnist.yaml", 64, "infer", 3),
        ("cifar100.yaml", 8, "train", 2),
        ("cifar100.yaml", 16, "infer", 2),
    ]
    for config, batch, mode, reps in cases:
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for _ in range(args.rounds):
            for name, checkout in (("before", args.before), ("after", ROOT)):
                path = str(ROOT / "configs" / config)
                rates[name].append(
                    measure(MEASURE, str(checkout), path, str(batch), mode, str(reps))
                )
        best = {name: max(values) for name, values in rates.items()}
        rows.append({"network": config, "mode": mode, "batch": batch, **best})
        print(json.dumps(rows[-1]), flush=True)
    user = {
        path: max(measure(USER_LAYER, str(ROOT), path) for _ in range(args.rounds))
        for path in ("forward", "forward_generic")
    }
    print(json.dumps(user), flush=True)
    report = {**provenance(), "networks": rows, "user_layer": user}
    (DOCS / "grid_backend.json").write_text(json.dumps(report, indent=1) + "\n")
    table = "\n".join(
        f"| `{r['network']}` | {r['mode']} | {r['batch']} | {r['before']:.1f} | {r['after']:.1f} "
        f"| {r['after'] / r['before']:.2f} |"
        for r in rows
    )
    (DOCS / "grid_backend.md").write_text(
        "# The fused grid backend in the core: speed before and after\n\n"
        + run_line(report)
        + f"\n\nImages/s, the best of {args.rounds} alternating runs of each checkout, one thread, "
        "each in a fresh process. Before: the fused layer lived in `networks/images.py` "
        "(`GridLayer`); after: `MetriplectorLayer` takes `core.grid` by itself.\n\n"
        "| network | mode | batch | before | after | after / before |\n"
        "|---|---|---:|---:|---:|---:|\n"
        + table
        + "\n\nA user's own `MetriplectorLayer(64, dim=2, fields=8, Rollout(steps=4))` on a 32x32 "
        "grid, batch 16, forward and backward: "
        f"{user['forward']:.1f} images/s through `forward` (the fused backend, the image "
        f"network's path) against {user['forward_generic']:.1f} through `forward_generic` (what "
        f"such a layer ran before): {user['forward'] / user['forward_generic']:.1f}x.\n"
    )


if __name__ == "__main__":
    main()
