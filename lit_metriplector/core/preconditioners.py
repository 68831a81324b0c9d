"""Preconditioners for the CG solve of ``A phi = rho``: maps ``r -> M^-1 r`` with ``M ~ A``.

- ``jacobi``: ``M = diag A``.
- ``elimination``: an incomplete ``L D L^T`` factorisation of the per-field part of ``A`` in a
  multilevel order. Each field of each sample is a weighted graph Laplacian plus a nonnegative
  mass, ``x.A x = sum_e w_e (x_a - x_b)^2 + sum_i m_i x_i^2`` (``w = kappa``, ``m = mass2 + W_aa``).
  Each level eliminates an independent set ``F`` of low-degree sites exactly; the Schur complement
  on the rest is again a Laplacian plus mass (the star-mesh transform of circuit theory: site
  ``f`` joins each pair of its neighbours ``i, j`` by ``w_fi w_fj / A_ff`` and passes
  ``w_fi m_f / A_ff`` of mass to each), so no pivot can turn negative by cancellation. Fill is
  kept sparse by keeping only edges among the ``keep`` strongest of either endpoint; that is the
  only approximation. On a forest (a perfect maze with closed walls) eliminating low-degree sites
  never creates fill that is dropped, so ``M = A`` and CG converges in one or two iterations;
  with leaky walls or heterogeneous conductance it needs tens.

  ``M`` is symmetric positive definite: its pivots are positive (a site with no edges and no mass
  has pivot 0 and, as in ``jacobi``, is left unscaled; so is the last site of a component without
  mass, the regularised coarsest solve of the singular problem). When a sample and field has no
  mass at all, the constant on its sites with edges (a null vector of ``A``) is projected out of
  the input and output of ``M^-1``, which is then positive definite on the rest. Sites whose
  degree never falls to ``max_degree`` (a dense graph) end the hierarchy with a Jacobi step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from .system import System

Preconditioner = Callable[[Tensor], Tensor]
PreconditionerName = Literal["none", "jacobi", "elimination"]


def jacobi(system: System, like: Tensor) -> Preconditioner:
    """``M = diag A``, known in closed form. Isolated sites with ``diag A = 0`` (walls without
    screening) carry no residual; they are left unscaled."""
    diag = system.operator_diagonal(like)
    inv = 1.0 / diag.where(diag > 0, 1.0)
    return lambda r: inv * r


@dataclass
class _Graph:
    """Laplacian plus mass on the union of all samples and fields (flat site index). Each edge is
    stored as two directed entries, sorted by ``row``."""

    row: Tensor
    col: Tensor
    weight: Tensor
    mass: Tensor


@dataclass
class _Step:
    """One level of the factorisation: sites ``f`` are eliminated, sites ``c`` form the next
    level. ``edge_f`` / ``edge_c`` index ``f`` / ``c`` for every edge between them; ``ratio`` is
    its weight over the pivot of its F site (minus the entry of ``L``)."""

    f: Tensor
    c: Tensor
    edge_f: Tensor
    edge_c: Tensor
    ratio: Tensor
    inv_pivot: Tensor


def _where(mask: Tensor) -> Tensor:
    """Indices of a 1-d mask."""
    return mask.nonzero()[:, 0]


def _take(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for 1-d ``index``; several times faster on CPU than advanced indexing."""
    return x.index_select(0, index)


def _merge(n: int, row: Tensor, col: Tensor, weight: Tensor, mass: Tensor) -> _Graph:
    """Sum duplicate entries; the result is sorted by row."""
    keys, inverse = torch.unique(row * n + col, return_inverse=True)
    weight = weight.new_zeros(keys.numel()).index_add_(0, inverse, weight)
    return _Graph(keys // n, keys % n, weight, mass)


def _table(row: Tensor, degree: Tensor, values: Tensor, fill: float) -> Tensor:
    """Lay out entries sorted by row as a padded table, one row of the graph per table row."""
    start = torch.cumsum(degree, 0) - degree
    slot = torch.arange(row.numel(), device=row.device) - _take(start, row)
    table = values.new_full((degree.numel(), int(degree.max())), fill)
    table.view(-1)[row * table.shape[1] + slot] = values
    return table


def _sparsify(graph: _Graph, keep: int) -> _Graph:
    """Drop edges that are not among the ``keep`` strongest of either endpoint (symmetric)."""
    degree = torch.bincount(graph.row, minlength=graph.mass.numel())
    if graph.row.numel() == 0 or int(degree.max()) <= keep:
        return graph
    kth = _table(graph.row, degree, graph.weight, 0.0).topk(keep, dim=1).values[:, -1]
    w = graph.weight
    strong = _where((w >= _take(kth, graph.row)) | (w >= _take(kth, graph.col)))
    return _Graph(_take(graph.row, strong), _take(graph.col, strong), _take(w, strong), graph.mass)


def _independent_set(graph: _Graph, degree: Tensor, max_degree: int, seed: int) -> Tensor:
    """Three of Luby's rounds (enough for a maximal set in practice): a candidate joins when it
    beats all candidate neighbours. Low degree first (less fill); ties are broken by a seeded
    random number, so the factorisation is a fixed function of the system."""
    generator = torch.Generator(degree.device).manual_seed(seed)
    noise = torch.rand(degree.numel(), generator=generator, device=degree.device)
    score = degree + noise.to(torch.float64)
    candidate = degree <= max_degree
    chosen = torch.zeros_like(candidate)
    for _ in range(3):
        s = score.where(candidate, torch.inf)
        rival = torch.full_like(s, torch.inf)
        rival = rival.scatter_reduce(0, graph.row, _take(s, graph.col), "amin", include_self=False)
        new = candidate & (s < rival)
        chosen |= new
        near = torch.zeros_like(degree).index_add_(0, graph.row, _take(new, graph.col).long())
        candidate &= ~new & (near == 0)
    return chosen


def _eliminate(graph: _Graph, max_degree: int, keep: int, seed: int) -> tuple[_Step, _Graph]:
    """Eliminate an independent set of low-degree sites; return the step and the (sparsified)
    Schur complement on the remaining sites. When no site qualifies, end with a Jacobi step."""
    n = graph.mass.numel()
    degree = torch.bincount(graph.row, minlength=n)
    pivot = graph.mass.index_add(0, graph.row, graph.weight)
    inv_pivot = 1.0 / pivot.where(pivot > 0, 1.0)
    in_f = _independent_set(graph, degree, max_degree, seed)
    if not bool(in_f.any()):  # Jacobi on what is left
        none, empty = graph.row[:0], pivot[:0]
        every = torch.arange(n, device=pivot.device)
        return _Step(every, none, none, none, empty, inv_pivot), _Graph(none, none, empty, empty)
    f, c = _where(in_f), _where(~in_f)
    local = torch.empty_like(degree)  # index of each site within F or within C
    local[f] = torch.arange(f.numel(), device=f.device)
    local[c] = torch.arange(c.numel(), device=c.device)
    from_f, to_f = _take(in_f, graph.row), _take(in_f, graph.col)
    out = _where(from_f)  # entries from F to C, grouped by F site (F is independent)
    edge_f = _take(local, _take(graph.row, out))
    edge_c = _take(local, _take(graph.col, out))
    w = _take(graph.weight, out)
    inv_f = _take(inv_pivot, f)
    ratio = w * _take(inv_f, edge_f)
    mass = _take(graph.mass, c).index_add(0, edge_c, ratio * _take(_take(graph.mass, f), edge_f))
    # Star-mesh: each F site joins every pair (a, b) of its entries, read off a table of them.
    entries = _table(edge_f, _take(degree, f), torch.arange(out.numel(), device=f.device), -1)
    i, j = torch.triu_indices(entries.shape[1], entries.shape[1], 1, device=f.device)
    a, b = entries[:, i].flatten(), entries[:, j].flatten()
    pair = _where((a >= 0) & (b >= 0))
    a, b = _take(a, pair), _take(b, pair)
    fill_i, fill_j, fill_w = _take(edge_c, a), _take(edge_c, b), _take(w, a) * _take(ratio, b)
    stay = _where(~from_f & ~to_f)
    row = torch.cat([_take(local, _take(graph.row, stay)), fill_i, fill_j])
    col = torch.cat([_take(local, _take(graph.col, stay)), fill_j, fill_i])
    weight = torch.cat([_take(graph.weight, stay), fill_w, fill_w])
    coarse = _sparsify(_merge(c.numel(), row, col, weight, mass), keep)
    return _Step(f, c, edge_f, edge_c, ratio, inv_f), coarse


def _graph(system: System, like: Tensor) -> _Graph:
    """The per-field part of ``A`` for every sample and field of ``like``, sites numbered as in
    ``like.flatten()``; edges with zero conductance are left out."""
    lattice = system.lattice
    sites = lattice.num_sites
    samples = like.shape[0] * like.shape[1]
    index = torch.arange(sites, device=like.device, dtype=torch.float64).view(lattice.site_shape)
    tail, head = (t.flatten().long() for t in lattice.endpoints(index))
    kappa = system.kappa.expand(*like.shape[:2], *lattice.edge_shape).reshape(samples, -1)
    edge = _where(((lattice.edge_mask(like).flatten() > 0) & (kappa > 0)).flatten())
    offset = sites * torch.arange(samples, device=like.device)[:, None]
    tail, head = (tail + offset).flatten()[edge], (head + offset).flatten()[edge]
    mass = torch.zeros_like(like)
    if system.mass2 is not None:
        mass = mass + system.mass2
    if system.coupling is not None:
        mass = mass + system.coupling.diagonal().view(1, -1, *[1] * (like.dim() - 2))
    w = kappa.flatten()[edge].to(like.dtype)
    row, col = torch.cat([tail, head]), torch.cat([head, tail])
    return _merge(like.numel(), row, col, torch.cat([w, w]), mass.flatten().to(like.dtype))


@torch.no_grad()
def elimination(
    system: System, like: Tensor, max_degree: int = 6, keep: int = 4, max_levels: int = 64
) -> Preconditioner:
    """Multilevel incomplete ``L D L^T`` factorisation (see the module docstring).

    Args:
        system: the system whose operator ``A`` is approximated (its per-field part).
        like: a field ``(B, C, *sites)``; fixes shape, dtype and device.
        max_degree: only sites with at most this many neighbours are eliminated (fill grows as
            the square of the degree).
        keep: after each level, an edge survives if it is among the ``keep`` strongest of one
            of its endpoints.
        max_levels: the last level is a Jacobi step on whatever is left.
    """
    graph = _graph(system, like.detach())
    # A sample and field without mass is singular: the constant on its sites with edges is a null
    # vector of A. Roundoff leaves residual along it, which M (exact or nearly so elsewhere) would
    # send back amplified; project it out on both sides, which keeps M symmetric.
    samples = like.shape[0] * like.shape[1]
    has_edge = torch.bincount(graph.row, minlength=like.numel()).view(samples, -1) > 0
    massless = (graph.mass.view(samples, -1) == 0).all(1, keepdim=True)
    null = (has_edge & massless).to(like.dtype)
    null = null / null.sum(1, keepdim=True).clamp_min(1).sqrt()
    singular = bool(massless.any())
    steps: list[_Step] = []
    while graph.mass.numel() > 0:
        limit = max_degree if len(steps) < max_levels - 1 else -1  # -1: Jacobi
        step, graph = _eliminate(graph, limit, keep, seed=len(steps))
        steps.append(step)

    def project(v: Tensor) -> Tensor:
        if not singular:
            return v.flatten()
        v = v.reshape(samples, -1)
        return (v - null * (v * null).sum(1, keepdim=True)).flatten()

    def apply(r: Tensor) -> Tensor:
        x, kept = project(r), []
        for s in steps:  # forward substitution: fold each F residual into its neighbours
            r_f = _take(x, s.f)
            kept.append(r_f)
            x = _take(x, s.c).index_add(0, s.edge_c, s.ratio * _take(r_f, s.edge_f))
        for s, r_f in zip(reversed(steps), reversed(kept), strict=True):  # back substitution
            x_f = (s.inv_pivot * r_f).index_add(0, s.edge_f, s.ratio * _take(x, s.edge_c))
            n = s.f.numel() + s.c.numel()
            x = x.new_empty(n).index_copy(0, s.c, x).index_copy(0, s.f, x_f)
        return project(x).view_as(r)

    return apply


def make_preconditioner(
    name: PreconditionerName, system: System, like: Tensor, **settings: int
) -> Preconditioner | None:
    """Build the preconditioner ``name`` for ``system``; ``like`` fixes shape and dtype;
    ``settings`` go to ``elimination``."""
    if name == "none":
        return None
    if name == "jacobi":
        with torch.no_grad():
            return jacobi(system, like)
    if name == "elimination":
        return elimination(system, like, **settings)
    raise ValueError(
        f"unknown preconditioner {name!r}; expected one of {get_args(PreconditionerName)}"
    )
