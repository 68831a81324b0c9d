"""What a trained Sudoku network's coupling heads have become: rows, columns, boxes or a mix.

Loads checkpoints of ``--config`` (``NAME=PATH``; a ``--partition`` checkpoint is one trained
with ``graph=partition``) and reports, per head, its AUC against the 20 peers of every cell and
against rows, columns and boxes alone (``metrics.graph_recovery``); for partition heads
also which of the 27 units (rows, columns, boxes) each of its groups is exactly
(``metrics.partition_units``). Writes ``docs/benchmarks/<name>.json``, ``.md`` and, for each
checkpoint, ``<name>_<NAME>.png`` (each head's coupling, then their maximum)::

    python benchmarks/sudoku_coupling.py learned=runs/sudoku/checkpoints/last.ckpt \\
        partition=/path/to/partition/last.ckpt --partition partition
    python benchmarks/sudoku_coupling.py three=/path/to/last.ckpt --partition three \\
        --network-arg three:graphs=3 --network-arg three:fields=33   # other network arguments
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch
from common import DOCS, ROOT, provenance, run_line, write_results
from sudoku_compute import load_network

from lit_metriplector.callbacks.coupling import coupling_image
from lit_metriplector.core import PartitionCoupling
from lit_metriplector.datasets.sudoku import peers
from lit_metriplector.datasets.sudoku.structure import UNITS
from lit_metriplector.metrics import graph_recovery, partition_units

UNIT_NAMES = [f"{kind} {i + 1}" for kind in ("row", "column", "box") for i in range(9)]


def analyse(network: torch.nn.Module) -> tuple[dict, torch.Tensor]:
    with torch.no_grad():
        coupling = network.coupling_matrix()
    scores = graph_recovery(coupling, peers())
    result = {
        "union_auc": scores["auc"],
        "head_auc": scores["head_auc"].tolist(),
        "kinds": scores["kinds"],
        "head_kind_auc": scores["head_kind_auc"].tolist(),
    }
    if isinstance(network.coupling, PartitionCoupling):
        with torch.no_grad():
            labels = network.coupling.labels()
        result["label_certainty"] = labels.amax(-1).mean(-1).tolist()
        groups = partition_units(labels.argmax(-1), torch.from_numpy(UNITS), UNIT_NAMES)
        result["groups"] = groups
        result["units_found"] = len({g for head in groups for g in head if g is not None})
    return result, coupling


def markdown(report: dict) -> str:
    lines = [f"# Sudoku coupling heads\n\n{run_line(report)}\n"]
    for name, r in report["checkpoints"].items():
        lines += [
            f"## {name}\n",
            f"AUC of the heads' maximum against every cell's 20 peers: {r['union_auc']:.4f}.\n",
            "| head | AUC, peers | rows | columns | boxes |"
            + (" groups (each exactly this unit) |" if "groups" in r else ""),
            "|---:|---:|---:|---:|---:|" + ("---|" if "groups" in r else ""),
        ]
        for h, auc in enumerate(r["head_auc"]):
            kinds = " | ".join(f"{a:.3f}" for a in r["head_kind_auc"][h])
            groups = ""
            if "groups" in r:
                groups = (
                    " "
                    + ", ".join(g or "(no unit)" for g in sorted(r["groups"][h], key=str))
                    + " |"
                )
            lines.append(f"| {h} | {auc:.3f} | {kinds} |{groups}")
        if "units_found" in r:
            lines.append(
                f"\nGroups that are exactly a unit: {r['units_found']} of the 27 units found; "
                f"mean label certainty per head "
                + ", ".join(f"{c:.3f}" for c in r["label_certainty"])
                + "."
            )
        lines.append(
            f"\n![the coupling of each head, then their maximum]({report['name']}_{name}.png)\n"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", metavar="NAME=PATH")
    parser.add_argument("--partition", nargs="*", default=[], metavar="NAME")
    parser.add_argument(
        "--network-arg",
        action="append",
        default=[],
        metavar="NAME:ARG=VALUE",
        help="a network argument checkpoint NAME was trained with, e.g. three:graphs=3",
    )
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "sudoku.yaml")
    parser.add_argument("--name", default="sudoku_coupling")
    opts = parser.parse_args()
    matplotlib.use("Agg")
    report = {**provenance(), "name": opts.name, "checkpoints": {}}
    for item in opts.checkpoints:
        name, path = item.split("=", 1)
        args = ["graph=partition"] if name in opts.partition else []
        args += [a.split(":", 1)[1] for a in opts.network_arg if a.split(":", 1)[0] == name]
        network, _ = load_network(Path(path), opts.config, args)
        result, coupling = analyse(network)
        report["checkpoints"][name] = result
        image = coupling_image(coupling)
        plt.imsave(DOCS / f"{opts.name}_{name}.png", image.permute(1, 2, 0).numpy())
    write_results(opts.name, report, markdown(report))


if __name__ == "__main__":
    main()
