"""Lattices: where fields live.

A field is a tensor ``(B, C, *sites)``; an edge quantity is a tensor ``(B, C, *edges)``. Each
lattice provides the discrete gradient ``grad`` (sites -> edges) and its divergence ``div``
(edges -> sites), an exact adjoint pair: ``<grad(phi), g>_edges = -<phi, div(g)>_sites``. Edge
slots that do not correspond to an edge of the lattice (the last column of a grid, the lower
triangle of a dense graph) are always zero, so every edge tensor has a fixed rectangular shape.

``Grid2D`` and ``Chain1D`` are regular grids (edges to the next site along each axis, none leaving
the domain); ``DenseGraph`` joins every pair of sites.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


class Lattice:
    """Interface shared by all lattices. Shapes are static; tensors carry batch and channel dims.

    Attributes:
        site_shape: shape of the trailing site dimensions of a field.
        edge_shape: shape of the trailing edge dimensions of an edge quantity.
        dim: number of spatial directions (2 for a grid, 1 for a chain, 0 for a dense graph);
            the stress-energy tensor has one momentum/stress component per direction.
    """

    site_shape: tuple[int, ...]
    edge_shape: tuple[int, ...]
    dim: int

    @property
    def num_sites(self) -> int:
        return math.prod(self.site_shape)

    @property
    def diameter(self) -> int:
        """Graph distance between the two farthest sites (bounds how far information travels)."""
        raise NotImplementedError

    def grad(self, phi: Tensor) -> Tensor:
        """Difference along each edge, ``(grad phi)_e = phi_head(e) - phi_tail(e)``."""
        raise NotImplementedError

    def div(self, g: Tensor) -> Tensor:
        """Divergence, the negative adjoint of ``grad``."""
        raise NotImplementedError

    def endpoints(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """A site quantity read at the tail and at the head of every edge (zero off-lattice)."""
        raise NotImplementedError

    def edge_to_site(self, q: Tensor) -> Tensor:
        """Each edge gives half of ``q_e`` to each endpoint, so ``sum(sites) == sum(edges)``."""
        raise NotImplementedError

    def edge_mask(self, like: Tensor) -> Tensor:
        """1 on the edge slots that are edges of the lattice, 0 elsewhere."""
        raise NotImplementedError

    def directional_average(self, q: Tensor) -> Tensor:
        """Average of edge quantities onto sites per direction: ``(..., dim, *sites)``."""
        raise NotImplementedError


class RegularGrid(Lattice):
    """A d-dimensional box of sites with an edge from each site to its successor along each axis.

    Edge quantities have shape ``(..., d, *sites)``: slot ``[i, x]`` is the edge ``(x, x + e_i)``,
    which does not exist on the last slice along axis i (that slot is kept at zero).
    """

    def __init__(self, *shape: int) -> None:
        if not shape or any(n < 1 for n in shape):
            raise ValueError(f"lattice shape must be positive integers, got {shape}")
        self.site_shape = tuple(int(n) for n in shape)
        self.dim = len(shape)
        self.edge_shape = (self.dim, *self.site_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}{self.site_shape}"

    @property
    def diameter(self) -> int:
        return sum(n - 1 for n in self.site_shape)

    def _axis(self, i: int) -> int:
        return -self.dim + i

    def _forward_diff(self, a: Tensor, i: int) -> Tensor:
        # a(x + e_i) - a(x), zero-padded at the far end so shapes stay fixed.
        ax = self._axis(i)
        n = a.shape[ax]
        d = a.narrow(ax, 1, n - 1) - a.narrow(ax, 0, n - 1)
        return _pad_axis(d, ax, 0, 1)

    def _shift_from_next(self, a: Tensor, i: int) -> Tensor:
        # a(x + e_i), zero where x + e_i leaves the box.
        ax = self._axis(i)
        return _pad_axis(a.narrow(ax, 1, a.shape[ax] - 1), ax, 0, 1)

    def _shift_from_prev(self, a: Tensor, i: int) -> Tensor:
        # a(x - e_i), zero where x - e_i leaves the box.
        ax = self._axis(i)
        return _pad_axis(a.narrow(ax, 0, a.shape[ax] - 1), ax, 1, 0)

    def grad(self, phi: Tensor) -> Tensor:
        return torch.stack([self._forward_diff(phi, i) for i in range(self.dim)], dim=-self.dim - 1)

    def div(self, g: Tensor) -> Tensor:
        # Backward difference of the edge slots: g(x) - g(x - e_i), summed over axes.
        out = 0
        for i, gi in enumerate(g.unbind(-self.dim - 1)):
            out = out + gi - self._shift_from_prev(gi, i)
        return out

    def endpoints(self, a: Tensor) -> tuple[Tensor, Tensor]:
        mask = self.edge_mask(a)
        tail = a.unsqueeze(-self.dim - 1) * mask
        head = torch.stack([self._shift_from_next(a, i) for i in range(self.dim)], -self.dim - 1)
        return tail, head

    def directional_average(self, q: Tensor) -> Tensor:
        slots = q.unbind(-self.dim - 1)
        avg = [0.5 * (qi + self._shift_from_prev(qi, i)) for i, qi in enumerate(slots)]
        return torch.stack(avg, dim=-self.dim - 1)

    def edge_to_site(self, q: Tensor) -> Tensor:
        return self.directional_average(q).sum(-self.dim - 1)

    def edge_mask(self, like: Tensor) -> Tensor:
        masks = []
        for i in range(self.dim):
            m = torch.ones(self.site_shape, dtype=like.dtype, device=like.device)
            m.narrow(i, self.site_shape[i] - 1, 1).zero_()
            masks.append(m)
        return torch.stack(masks)


class Grid2D(RegularGrid):
    """``H x W`` grid with 4-neighbour edges; edge slots ``(..., 2, H, W)`` (axis 0 = rows)."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__(height, width)


class Chain1D(RegularGrid):
    """A chain of ``T`` sites (a sequence); edge slots ``(..., 1, T)``."""

    def __init__(self, length: int) -> None:
        super().__init__(length)


class DenseGraph(Lattice):
    """``N`` sites, every pair joined by an edge. Edge slots ``(..., N, N)``: ``[x, y]`` with
    ``x < y`` is the edge ``(x, y)``; the diagonal and lower triangle are zero."""

    dim = 0

    def __init__(self, num_nodes: int) -> None:
        if num_nodes < 1:
            raise ValueError(f"a dense graph needs at least one node, got {num_nodes}")
        self.site_shape = (int(num_nodes),)
        self.edge_shape = (int(num_nodes), int(num_nodes))

    def __repr__(self) -> str:
        return f"DenseGraph({self.site_shape[0]})"

    @property
    def diameter(self) -> int:
        return min(1, self.site_shape[0] - 1)

    def edge_mask(self, like: Tensor) -> Tensor:
        n = self.site_shape[0]
        return torch.ones(n, n, dtype=like.dtype, device=like.device).triu(1)

    def endpoints(self, a: Tensor) -> tuple[Tensor, Tensor]:
        mask = self.edge_mask(a)
        return a.unsqueeze(-1) * mask, a.unsqueeze(-2) * mask

    def grad(self, phi: Tensor) -> Tensor:
        tail, head = self.endpoints(phi)
        return head - tail

    def div(self, g: Tensor) -> Tensor:
        g = g * self.edge_mask(g)
        return g.sum(-1) - g.sum(-2)

    def edge_to_site(self, q: Tensor) -> Tensor:
        q = q * self.edge_mask(q)
        return 0.5 * (q.sum(-1) + q.sum(-2))

    def directional_average(self, q: Tensor) -> Tensor:
        raise NotImplementedError("a dense graph has no spatial directions")


def _pad_axis(a: Tensor, axis: int, before: int, after: int) -> Tensor:
    """Zero-pad ``a`` along a (negative) axis."""
    pad = [0, 0] * (-axis - 1) + [before, after]
    return F.pad(a, pad)
