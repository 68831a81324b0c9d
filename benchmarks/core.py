"""CG solves on perfect mazes: plain CG, Jacobi PCG and the elimination preconditioner.

For each grid size and two wall settings ("closed": kappa_wall = 0, mass2 = 0, a singular problem
on a forest; "leaky": kappa_wall = 1e-3, mass2 = 1e-4) it records, over a batch of mazes with a
unit source at the start and a unit sink at the goal: CG iterations (median over the batch), the
worst true relative residual ``|A phi - rho| / |rho|``, the wall time of ``solve`` (preconditioner
setup included; median over repeats) and of the setup alone. Then the peak memory of
differentiating the solve: the implicit (adjoint) backward of ``solve`` against backpropagation
through the unrolled iterations of ``conjugate_gradient``.

Writes ``docs/benchmarks/core.json`` and ``docs/benchmarks/core.md``::

    python benchmarks/core.py                     # a few minutes
    python benchmarks/core.py --sizes 15 39 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from common import provenance, run_line, write_results
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from lit_metriplector.core import CGOptions, State, System, conjugate_gradient, rollout, solve
from lit_metriplector.core.preconditioners import make_preconditioner
from lit_metriplector.core.solver import default_max_iter
from lit_metriplector.datasets.mazes import make_example
from lit_metriplector.networks.maze import ideal_system

PRECONDITIONERS = ("none", "jacobi", "elimination")
WALLS = {"closed": (0.0, 0.0), "leaky": (1e-3, 1e-4)}  # kappa_wall, mass2
OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"


def maze_system(size: int, batch: int, wall: float, mass2: float, dtype: torch.dtype) -> System:
    """Perfect mazes on a ``size x size`` grid: conductance 1 between open sites, ``wall`` on
    every other edge; unit source at the start, unit sink at the goal."""
    cells = (size - 1) // 2
    mazes = [make_example(cells, np.random.SeedSequence([size, b]))[0] for b in range(batch)]
    return ideal_system(torch.from_numpy(np.stack(mazes)).to(dtype), wall, mass2)


def timed(fn: Callable, *args, repeats: int, budget: float = 30.0) -> tuple[object, float]:
    """Run ``fn(*args)`` up to ``repeats`` times (at least once, no more once ``budget`` seconds
    are spent); return its last result and the median wall time."""
    times: list[float] = []
    while len(times) < repeats and (not times or sum(times) < budget):
        start = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def bench_solves(args: argparse.Namespace) -> list[dict]:
    rows = []
    for size in args.sizes:
        for walls, (wall, mass2) in WALLS.items():
            system = maze_system(size, args.batch, wall, mass2, args.dtype)
            for name in PRECONDITIONERS:
                options = CGOptions(args.tol, preconditioner=name, dtype=args.dtype)
                (_, info), seconds = timed(solve, system, options, repeats=args.repeats)
                like = system.source
                _, setup = timed(make_preconditioner, name, system, like, repeats=args.repeats)
                rows.append(
                    dict(
                        size=size,
                        cells=(size - 1) // 2,
                        walls=walls,
                        preconditioner=name,
                        iterations=int(info.iterations.median()),
                        max_iter=default_max_iter(system, name),
                        converged=bool(info.converged.all()),
                        residual=float(info.residual.max()),  # true relative residual
                        seconds=seconds,
                        setup_seconds=setup,
                    )
                )
                print(rows[-1], flush=True)
    return rows


def solve_backward(system: System, options: CGOptions) -> None:
    """One solve and its adjoint backward to kappa."""
    kappa = system.kappa.detach().requires_grad_()
    phi, _ = solve(system.replace(kappa=kappa), options)
    (phi * system.source).sum().backward()


def rollout_backward(system: System, options: CGOptions) -> None:
    """An 8-step strang rollout with friction and mobility (one implicit CG solve per step),
    backpropagated to kappa."""
    kappa = system.kappa.detach().requires_grad_()
    half = torch.full_like(system.source, 0.5)
    moving = system.replace(kappa=kappa, gamma=half, mobility=half)
    zero = torch.zeros_like(system.source)
    final, _ = rollout(moving, State(zero, zero, zero[:, 0]), 0.2, 8, "strang", options=options)
    (final.phi * system.source).sum().backward()


def bench_reuse(args: argparse.Namespace) -> list[dict]:
    """Forward + backward time of one solve and of a rollout with mobility solves, on the same
    mazes: what building the preconditioner once per configured system saves."""
    rows = []
    for size in args.reuse_sizes:
        system = maze_system(size, args.batch, *WALLS["leaky"], args.dtype)
        for name in ("jacobi", "elimination"):
            options = CGOptions(args.tol, preconditioner=name, dtype=args.dtype)
            _, solve_seconds = timed(solve_backward, system, options, repeats=args.repeats)
            _, rollout_seconds = timed(rollout_backward, system, options, repeats=args.repeats)
            rows.append(
                dict(
                    size=size,
                    preconditioner=name,
                    solve_seconds=solve_seconds,
                    rollout_seconds=rollout_seconds,
                )
            )
            print(rows[-1], flush=True)
    return rows


class PeakMemory(TorchDispatchMode):
    """Bytes of the tensor storages that operators allocate while active: the live total and its
    peak. A storage counts from the operator that creates it until it is freed (a finalizer on
    the storage, which torch keeps alive exactly as long as the memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.tracked: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        self.tracked.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes and key not in self.tracked:
                self.tracked.add(key)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(storage, self._free, key, nbytes)
        return out


def peak_backward_memory(system: System, name: str, implicit: bool, tol: float) -> int:
    """Peak bytes allocated by a solve and the backward of ``rho.phi`` (the effective resistance
    between start and goal) to kappa. Its adjoint source is ``rho``, which, unlike an arbitrary
    one, is consistent with the singular closed-wall problem."""
    kappa = system.kappa.clone().requires_grad_()
    with PeakMemory() as memory:
        s = system.replace(kappa=kappa)
        if implicit:
            phi = solve(s, CGOptions(tol, preconditioner=name, dtype=s.source.dtype))[0]
        else:
            precondition = make_preconditioner(name, s, s.source)
            phi = conjugate_gradient(
                s.operator, s.source, precondition, tol=tol, max_iter=default_max_iter(s, name)
            )[0]
        (phi * s.source).sum().backward()
    return memory.peak


def bench_memory(args: argparse.Namespace) -> list[dict]:
    rows = []
    for walls, (wall, mass2) in WALLS.items():
        system = maze_system(args.memory_size, args.batch, wall, mass2, args.dtype)
        for name in PRECONDITIONERS:
            implicit = peak_backward_memory(system, name, True, args.tol)
            unrolled = peak_backward_memory(system, name, False, args.tol)
            rows.append(
                dict(
                    size=args.memory_size,
                    walls=walls,
                    preconditioner=name,
                    implicit_bytes=implicit,
                    unrolled_bytes=unrolled,
                    ratio=unrolled / implicit,
                )
            )
            print(rows[-1], flush=True)
    return rows


def markdown(report: dict) -> str:
    a = report["args"]
    lines = [f"# Core benchmark ({', '.join(a['sections'])})", "", f"{run_line(report)}.", ""]
    if "solves" in report:
        lines += solves_markdown(report)
    if "memory" in report:
        lines += memory_markdown(report)
    if "reuse" in report:
        lines += reuse_markdown(report)
    return "\n".join(lines) + "\n"


def reuse_markdown(report: dict) -> list[str]:
    lines = [
        "## Forward + backward with mobility solves",
        "",
        "Leaky-wall mazes, batch of {batch}, tol {tol}, {dtype}: one `solve` with its adjoint "
        "backward to kappa, and an 8-step `strang` rollout (friction 0.5, mobility 0.5, dt 0.2; "
        "one implicit CG solve per step) backpropagated to kappa. Median seconds.".format(
            **report["args"]
        ),
        "",
        "| grid | preconditioner | solve fwd+bwd (s) | rollout fwd+bwd (s) |",
        "|---|---|---:|---:|",
    ]
    for r in report["reuse"]:
        lines.append(
            f"| {r['size']}x{r['size']} | {r['preconditioner']} | {r['solve_seconds']:.4f} "
            f"| {r['rollout_seconds']:.4f} |"
        )
    return lines + [""]


def solves_markdown(report: dict) -> list[str]:
    a = report["args"]
    lines = [
        "## CG on perfect mazes",
        "",
        f"{a['dtype']}, tol {a['tol']}, batch of {a['batch']} mazes.",
        "",
        "Walls: *closed* = kappa 0 across walls and mass2 0 (singular; the open sites form a "
        "tree), *leaky* = kappa_wall 1e-3, mass2 1e-4. Iterations: median over the batch "
        "(`max_iter` = the solver's default cap). Residual: worst true relative residual "
        "`|A phi - rho| / |rho|`. Time: `solve()` (forward only, preconditioner setup included), "
        "median of repeats; setup: building the preconditioner alone. Ratios are against plain "
        "CG on the same mazes. CG stops on its recursive residual; in float32 the true one can "
        "stall far above `tol` (large closed mazes), which the residual column shows.",
        "",
        "| grid | walls | preconditioner | iterations | fewer iterations | residual | time (s) "
        "| speed-up | setup (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    plain = {(r["size"], r["walls"]): r for r in report["solves"] if r["preconditioner"] == "none"}
    for r in report["solves"]:
        base = plain[r["size"], r["walls"]]
        capped = "" if r["converged"] else f" (cap {r['max_iter']}, not converged)"
        lines.append(
            f"| {r['size']}x{r['size']} | {r['walls']} | {r['preconditioner']} "
            f"| {r['iterations']}{capped} | {base['iterations'] / max(r['iterations'], 1):.0f}x "
            f"| {r['residual']:.1e} | {r['seconds']:.3f} | {base['seconds'] / r['seconds']:.1f}x "
            f"| {r['setup_seconds']:.3f} |"
        )
    return lines + [""]


def memory_markdown(report: dict) -> list[str]:
    a = report["args"]
    lines = [
        f"## Peak memory of differentiating the solve ({a['memory_size']}x{a['memory_size']})",
        "",
        "Peak bytes of the tensor storages allocated by the solve plus the backward of "
        "`rho.phi` (the effective resistance between start and goal) to kappa, tracked per "
        "storage with a `TorchDispatchMode` (each storage counts from the operator that "
        "allocates it until torch frees it). *Implicit*: `solve()` with its "
        "adjoint backward; *unrolled*: autograd through every iteration of "
        "`conjugate_gradient`, with the same preconditioner.",
        "",
        "| walls | preconditioner | implicit (MB) | unrolled (MB) | unrolled / implicit |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report["memory"]:
        lines.append(
            f"| {r['walls']} | {r['preconditioner']} | {r['implicit_bytes'] / 1e6:.2f} "
            f"| {r['unrolled_bytes'] / 1e6:.2f} | {r['ratio']:.3g}x |"
        )
    return lines + [""]


SECTIONS = {"solves": bench_solves, "memory": bench_memory, "reuse": bench_reuse}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[15, 39, 99, 199])
    parser.add_argument("--batch", type=int, default=4, help="mazes per solve")
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (within 30 s each)")
    parser.add_argument("--memory-size", type=int, default=39)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; on a shared machine, OpenMP threads that wait on busy cores make "
        "every operation up to 100x slower, so one thread gives the steadiest numbers",
    )
    parser.add_argument("--reuse-sizes", type=int, nargs="+", default=[39, 99])
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run"
    )
    parser.add_argument("--name", default="core", help="results file name in --out")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype_name, args.dtype = args.dtype, getattr(torch, args.dtype)
    report = dict(
        **provenance(),
        args={**{k: v for k, v in vars(args).items() if k != "out"}, "dtype": dtype_name},
        **{section: SECTIONS[section](args) for section in args.sections},
    )
    write_results(args.name, report, markdown(report), args.out)


if __name__ == "__main__":
    main()
