"""Couplings shared across the batch: a learned graph between the sites, applied by matmul.

A ``DenseGraph`` system carries a conductance per sample, field and pair of sites,
``(B, C, N, N)``: every operator application touches all of it. When the graph is a property of
the task rather than of the sample (Sudoku: which cells constrain which is the same for every
puzzle), one matrix per head ``K_h`` (``(H, N, N)``, symmetric, ``>= 0``, zero diagonal) serves
the whole batch. The input still configures the system per sample, through site conductivities
``k`` (``(B, C, N)``, ``>= 0``) that scale the edges in the product form of the core's layer::

    kappa_{a,xy} = k_{a,x} K_{h(a),xy} k_{a,y}          field a couples through head h(a)

Fields are split into ``H`` equal groups, group ``h`` on head ``h``. With ``d = k (K k)`` the
weighted degree, every quantity of the edge sum is a matrix product (``O(N^2)`` per field, no
``(B, C, N, N)`` tensor)::

    A phi            = d phi - k K (k phi) + mass2 phi + W phi              (graph Laplacian)
    sum_e kappa_e (grad_e phi)^2 / 2, per site (each edge gives half to each endpoint)
                     = [d phi^2 - 2 phi k K(k phi) + k K(k phi^2)] / 4

``CoupledSystem`` is a ``System`` with these methods replaced, so the core's Hamiltonian,
brackets, vector field, integrators (``euler``, ``strang`` without mobility) and
``stress_energy`` (``T^00`` and ``L`` per site and field) run on it unchanged; ``dense()``
returns the same system as a plain ``DenseGraph`` ``System`` (for tests).

``SharedCoupling`` is the learned ``K``: ``K_xy = (scale / (N - 1)) sigmoid(S_xy)`` with ``S``
symmetrised, so every weighted degree is below ``scale`` and ``A``'s graph part is bounded by
``2 scale max(k)^2`` (Gershgorin): explicit steps stay stable for a bounded time step, by
construction.

``PartitionCoupling`` restricts each head to the graphs that are unions of cliques: every site
holds a soft label among ``G`` groups (``P = softmax(S)``, ``(H, N, G)``) and sites couple as
far as they share a label, ``K = P diag(scale / max(n, 1)) P^T`` off the diagonal, ``n = 1^T P``
the group sizes. A head then cannot hold a graph that is not a partition (Sudoku's union of
rows, columns and boxes is not one), so the heads must split it; which cells share a label is
learned. The weighted degree is ``sum_g P_xg (n_g - P_xg) scale / max(n_g, 1) < scale``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .lattice import DenseGraph
from .system import System


def couple(graph: Tensor, x: Tensor) -> Tensor:
    """``(K_{h(a)} x_a)_x = sum_y K_{h(a),xy} x_{a,y}`` for ``x`` ``(..., C, N)`` and ``graph``
    ``(H, N, N)`` (symmetric): the ``C`` fields split into ``H`` equal groups, one per head.
    One batched matmul per head over every leading index (no per-sample copy of ``K``)."""
    graphs, n = graph.shape[0], graph.shape[-1]
    fields = x.shape[-2]
    if fields % graphs:
        raise ValueError(f"{fields} fields do not split into {graphs} coupling graphs")
    grouped = x.unflatten(-2, (graphs, fields // graphs)).movedim(-3, 0)  # (H, ..., C/H, N)
    shape = grouped.shape
    out = torch.bmm(grouped.reshape(graphs, -1, n), graph.to(x.dtype))  # K symmetric: x K = K x
    return out.reshape(shape).movedim(0, -3).flatten(-3, -2)


@dataclass(frozen=True)
class CoupledSystem(System):
    """A ``System`` on ``N`` fully connected sites whose edges are ``k_x K_{h,xy} k_y``.

    Args (beyond ``System``'s):
        kappa: site conductivities ``k`` ``(B, C, N)`` (or broadcastable), ``>= 0``. Not edge
            conductances: those are ``k_x K_xy k_y`` and are never formed.
        graph: the shared coupling ``K`` ``(H, N, N)``: symmetric, ``>= 0``, zero diagonal.

    ``mobility`` is not supported (its implicit step solves a plain ``System``): use friction.
    """

    graph: Tensor | None = None

    def __post_init__(self) -> None:
        # No edge mask: ``kappa`` holds site conductivities here.
        if (
            self.graph is None
            or self.graph.dim() != 3
            or self.graph.shape[1:]
            != (
                self.lattice.num_sites,
                self.lattice.num_sites,
            )
        ):
            shape = None if self.graph is None else tuple(self.graph.shape)
            raise ValueError(
                f"CoupledSystem needs a graph (H, {self.lattice.num_sites}, "
                f"{self.lattice.num_sites}), got {shape}"
            )
        if self.mobility is not None:
            raise ValueError(
                "CoupledSystem does not support mobility (its implicit step solves a plain "
                "System); use friction (gamma) for dissipation"
            )

    def _coupled(self, *xs: Tensor) -> list[Tensor]:
        """``K x`` for each ``x`` (same shape), in one batched matmul."""
        return list(couple(self.graph, torch.stack(torch.broadcast_tensors(*xs))).unbind(0))

    def _laplacian_terms(self, phi: Tensor) -> tuple[Tensor, Tensor]:
        """The weighted degree ``d = k K k`` and the neighbour sum ``k K (k phi)``."""
        k = self.kappa
        k_k, k_phi = self._coupled(k.expand_as(phi), k * phi)
        return k * k_k, k * k_phi

    def operator(self, phi: Tensor) -> Tensor:
        """``A phi = L_kappa phi + mass2 phi + W phi`` with the weighted graph Laplacian."""
        degree, neighbours = self._laplacian_terms(phi)
        out = degree * phi - neighbours
        if self.mass2 is not None:
            out = out + self.mass2 * phi
        if self.coupling is not None:
            out = out + torch.einsum("ab,nb...->na...", self.coupling, phi)
        return out

    def operator_diagonal(self, like: Tensor) -> Tensor:
        k = self.kappa.expand_as(like)
        diag = k * couple(self.graph, k)
        if self.mass2 is not None:
            diag = diag + self.mass2
        if self.coupling is not None:
            diag = diag + self.coupling.diagonal().view(1, -1, *[1] * (like.dim() - 2))
        return diag

    def gradient_energy(self, phi: Tensor) -> Tensor:
        """The edge energy ``kappa_e (grad_e phi)^2 / 2`` as per-site shares ``(B, C, N)``:
        each edge gives half to each endpoint, so the sum over sites is the edge sum."""
        k = self.kappa
        k_k, k_phi, k_phi2 = self._coupled(k.expand_as(phi), k * phi, k * phi**2)
        return 0.25 * k * (k_k * phi**2 - 2 * phi * k_phi + k_phi2)

    def site_gradient_energy(self, phi: Tensor) -> Tensor:
        """``gradient_energy``: already per site, so the core's ``stress_energy`` reads ``T^00``
        and ``L`` of a coupled system without forming its edges."""
        return self.gradient_energy(phi)

    def edge_conductance(self) -> Tensor:
        """The edge conductances ``kappa_xy = k_x K_xy k_y`` ``(B, C, N, N)``: big, for tests
        and pictures only."""
        k = self.kappa
        graphs = self.graph.shape[0]
        fields = k.shape[1]
        graph = self.graph.repeat_interleave(fields // graphs, dim=0)  # (C, N, N)
        return k.unsqueeze(-1) * graph * k.unsqueeze(-2)

    def dense(self) -> System:
        """The same system as a plain ``System`` on ``DenseGraph(N)``."""
        fields = {
            name: getattr(self, name)
            for name in ("mass2", "source", "gamma", "mobility", "coupling", "quartic")
        }
        return System(
            DenseGraph(self.lattice.num_sites),
            self.edge_conductance(),
            rotation=self.rotation,
            temperature=self.temperature,
            **fields,
        )


def symmetric_off_diagonal(k: Tensor) -> Tensor:
    """``k``'s upper triangle mirrored below it: exactly symmetric (rounding would break a product
    that is symmetric only in exact arithmetic), zero diagonal."""
    upper = k.triu(1)
    return upper + upper.mT


class SharedCoupling(nn.Module):
    """A learned coupling ``K`` ``(H, N, N)`` shared by every sample: symmetric, ``>= 0``, zero
    diagonal, each weighted degree ``sum_y K_xy < scale``.

    ``K_xy = scale / (N - 1) * sigmoid(gain (S_xy + S_yx) / 2)``, ``S`` a free ``(H, N, N)``
    parameter whose logits ``gain S`` start at ``init`` plus noise ``noise`` (which breaks the
    symmetry between sites: nothing else tells them apart). ``gain`` multiplies the learning
    rate of the coupling under Adam-type optimizers (whose steps do not depend on the gradient's
    scale): a pair's logit must travel several units, one learning rate per step at best.

    Args:
        sites: ``N``.
        graphs: ``H``, independent graphs.
        scale: bound of the weighted degree.
        init: initial logit of every pair (``sigmoid(0) = 1/2``).
        noise: standard deviation of the initial logits.
        gain: the logits are ``gain`` times the parameter.
    """

    def __init__(
        self,
        sites: int,
        graphs: int = 4,
        scale: float = 4.0,
        init: float = 0.0,
        noise: float = 0.1,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        if sites < 2 or graphs < 1 or scale <= 0 or gain <= 0:
            raise ValueError(
                f"need sites >= 2, graphs >= 1, scale > 0, gain > 0; got {sites}, {graphs}, "
                f"{scale}, {gain}"
            )
        self.sites, self.graphs, self.scale, self.gain = sites, graphs, scale, gain
        self.logits = nn.Parameter((init + noise * torch.randn(graphs, sites, sites)) / gain)

    def forward(self) -> Tensor:
        s = 0.5 * self.gain * (self.logits + self.logits.transpose(-1, -2))
        return symmetric_off_diagonal(torch.sigmoid(s) * (self.scale / (self.sites - 1)))


class PartitionCoupling(nn.Module):
    """A learned coupling ``K`` ``(H, N, N)`` whose heads are soft partitions of the sites:
    ``K_h = P_h diag(scale / max(n_h, 1)) P_h^T`` with the diagonal removed, ``P_h =
    softmax(gain S_h)`` each site's soft label among ``groups`` (``(N, G)``), ``n_h = 1^T P_h``
    the group sizes. Symmetric, ``>= 0``, zero diagonal, each weighted degree ``< scale``.

    Args:
        sites: ``N``.
        graphs: ``H``, independent partitions.
        groups: ``G``, the most labels a head may use (empty groups cost nothing).
        scale: bound of the weighted degree.
        noise: standard deviation of the initial logits (all labels start equally likely).
        gain: the logits are ``gain`` times the parameter (a learning-rate multiplier, as in
            ``SharedCoupling``).
    """

    def __init__(
        self,
        sites: int,
        graphs: int = 4,
        groups: int = 9,
        scale: float = 4.0,
        noise: float = 0.1,
        gain: float = 1.0,
    ) -> None:
        super().__init__()
        if sites < 2 or graphs < 1 or groups < 1 or scale <= 0 or gain <= 0:
            raise ValueError(
                f"need sites >= 2, graphs >= 1, groups >= 1, scale > 0, gain > 0; got {sites}, "
                f"{graphs}, {groups}, {scale}, {gain}"
            )
        self.sites, self.graphs, self.groups = sites, graphs, groups
        self.scale, self.gain = scale, gain
        self.logits = nn.Parameter(noise * torch.randn(graphs, sites, groups) / gain)

    def labels(self) -> Tensor:
        """``P`` ``(H, N, G)``: each site's soft label per head."""
        return torch.softmax(self.gain * self.logits, -1)

    def forward(self) -> Tensor:
        p = self.labels()
        weight = self.scale / p.sum(1).clamp_min(1.0)  # (H, G)
        return symmetric_off_diagonal((p * weight[:, None]) @ p.mT)

    def heterogeneity(self) -> Tensor:
        """How unalike the groups of a head meet the groups of another: ``head_heterogeneity``
        of the labels."""
        return head_heterogeneity(self.labels())


def head_heterogeneity(p: Tensor) -> Tensor:
    """For soft partitions ``p`` ``(H, N, G)``: the sum over ordered pairs of heads ``a != b`` of
    the variance, over the groups ``g`` of ``a`` weighted by their sizes ``n_g``, of each group's
    purity against ``b``, ``sum_h (P_a^T P_b)[g, h]^2 / n_g^2`` (1 when ``g`` lies in one group
    of ``b``, ``1/k`` when spread evenly over ``k``). Zero when every group of a head meets
    every other head alike, as a head of rows meets a head of columns (each row one cell of each
    column); a head that mixes kinds (some columns, some boxes) meets a head of rows unalike. A
    generic prior: it reads nothing of any board's geometry."""
    sizes = p.sum(1)  # (H, G)
    overlap = torch.einsum("ang,bnh->abgh", p, p)  # (H, H, G, G) group intersections
    purity = overlap.square().sum(-1) / sizes[:, None].square().clamp_min(1e-6)  # (H, H, G)
    weight = sizes / sizes.sum(-1, keepdim=True)  # (H, G)
    mean = (weight[:, None] * purity).sum(-1, keepdim=True)
    spread = (weight[:, None] * (purity - mean).square()).sum(-1)  # (H, H)
    return spread.sum() - spread.diagonal().sum()


def laplacian(graph: Tensor) -> Tensor:
    """The graph Laplacians ``diag(K 1) - K`` ``(..., N, N)`` of couplings ``(..., N, N)``:
    symmetric PSD when ``K`` is symmetric and ``>= 0``."""
    return torch.diag_embed(graph.sum(-1)) - graph
