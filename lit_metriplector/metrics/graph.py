"""How well a learned coupling matrix recovers a known graph (Sudoku's constraint graph).

Scores rank the pairs of distinct sites by coupling; larger means "more coupled". A coupling
whose sign carries no meaning (or whose peers repel) should be passed as ``coupling.abs()`` or
``-coupling``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def _auc(scores: Tensor, positive: Tensor) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2 (Mann-Whitney U)."""
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # Tied values share the mean of the 1-based ranks they span.
    ends = counts.cumsum(0).double()
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    n_pos = int(positive.sum())
    n_neg = positive.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def _precision_at_degree(coupling: Tensor, truth: Tensor) -> float:
    """Mean over sites of the fraction of true partners among the site's k highest-scoring
    others, k being its number of true partners (20 for Sudoku peers)."""
    n = coupling.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=coupling.device)
    scores = coupling.double().masked_fill(eye, float("-inf"))
    order = scores.argsort(dim=-1, descending=True)
    hits = truth.gather(-1, order)
    degree = truth.sum(-1)
    within = torch.arange(n, device=coupling.device) < degree[:, None]
    has = degree > 0
    return float(((hits & within).sum(-1)[has] / degree[has]).mean())


def graph_recovery(
    coupling: Tensor, truth: Tensor, kinds: Mapping[str, Tensor] | None = None
) -> dict[str, object]:
    """Scores of a coupling (81, 81) or per-head couplings (H, 81, 81) against a true graph.

    Args:
        coupling: pair scores; the diagonal is ignored.
        truth: (81, 81) bool adjacency, e.g. ``datasets.sudoku.peers()``.
        kinds: named sub-graphs to match each head against; default for (H, 81, 81) input:
            Sudoku's ``rows``, ``columns`` and ``boxes``.

    Returns:
        ``auc``: the probability that a true pair scores above a false one, over off-diagonal
        pairs, ties counting 1/2 (1.0 = perfect, 0.5 = chance). ``top20_precision``: mean over
        sites of the fraction of true partners among each site's k best-scoring others, k = its
        number of true partners (20 per cell for Sudoku peers). For (H, 81, 81) input these two
        are for the graphs' element-wise maximum (a pair is found if some graph couples it), and
        there are also ``head_auc`` and ``head_top20_precision`` (H,) tensors, ``kinds`` (names),
        ``head_kind_auc`` (H, len(kinds)) tensor of each head's AUC against each kind, and
        ``head_kind``: the best-matching kind's name per head.
    """
    truth = truth.to(device=coupling.device, dtype=torch.bool)
    off = ~torch.eye(truth.shape[-1], dtype=torch.bool, device=coupling.device)
    if coupling.ndim == 2:
        return {
            "auc": _auc(coupling.double()[off], truth[off]),
            "top20_precision": _precision_at_degree(coupling, truth),
        }
    if kinds is None:
        # Imported here so that the metrics do not load the Sudoku data library unless needed.
        from ..datasets.sudoku.structure import constraint_masks

        kinds = constraint_masks()
    names = list(kinds)
    masks = [kinds[name].to(device=coupling.device, dtype=torch.bool)[off] for name in names]
    kind_auc = torch.tensor(
        [[_auc(head.double()[off], mask) for mask in masks] for head in coupling],
        dtype=torch.float64,
    )
    return {
        **graph_recovery(coupling.max(dim=0).values, truth),
        "head_auc": torch.tensor([_auc(head.double()[off], truth[off]) for head in coupling]),
        "head_top20_precision": torch.tensor(
            [_precision_at_degree(head, truth) for head in coupling]
        ),
        "kinds": names,
        "head_kind_auc": kind_auc,
        "head_kind": [names[k] for k in kind_auc.argmax(dim=1).tolist()],
    }


def partition_units(labels: Tensor, units: Tensor, names: list[str]) -> list[list[str | None]]:
    """Which known unit each group of a partition is: ``labels`` ``(H, N)`` (each site's group
    per head), ``units`` ``(U, n)`` the sites of each known unit, ``names`` theirs.

    Returns, per head, the name of the unit whose sites are exactly each non-empty group's, or
    ``None`` for a group that is no known unit (groups in order of their label).
    """
    known = {frozenset(unit.tolist()): name for unit, name in zip(units, names, strict=True)}
    sites = torch.arange(labels.shape[-1])
    return [
        [known.get(frozenset(sites[head == g].tolist())) for g in head.unique().tolist()]
        for head in labels.cpu()
    ]
