"""Maze solver on the dissipative branch (DESIGN.md §3).

Local convolutions read the maze (open / start / goal) and configure a (weakly screened) Poisson
system: conductance between open sites, a dipole source at start and goal. CG finds the
equilibrium; the stress-energy tensor marks where current flows, which in a perfect maze is exactly
the path (dead ends carry none). Every operation is local or a solve, so a model trained on 15x15
mazes runs on any size. What makes it generalise: walls insulate exactly (``relu`` conductivity,
so nothing leaks however large the maze) and the screening is fixed and tiny (so the current does
not die out along long paths).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..core import Grid2D, MetriplectorLayer, RolloutReport


def conv_stack(in_channels: int, width: int, layers: int, kernel_size: int = 3) -> nn.Sequential:
    """``layers`` same-padded convolutions with GELU, the receptive field of the heads."""
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [
            nn.Conv2d(
                in_channels if i == 0 else width, width, kernel_size, padding=kernel_size // 2
            ),
            nn.GELU(),
        ]
    return nn.Sequential(*modules)


class MazeNetwork(nn.Module):
    """Per-site path logits for mazes ``(B, 3, H, W)`` (channels open / start / goal).

    Args:
        features: width of the site features.
        fields: number of fields solved for per layer.
        layers: Metriplector layers (each one a CG solve).
        encoder_layers: 3x3 convolutions before the first layer.
        edge_rank: rank of the pair factor of the conductance (0: site conductivities only).
        tol: CG relative residual.
        max_iter: CG iteration cap (``None``: scales with the maze).
        preconditioner: CG preconditioner.
        mass2: fixed screening mass (``None``: learned per site). A learned one drifts to
            whatever 15x15 mazes tolerate, which is too short a screening length for the paths
            of larger mazes; a fixed ``1e-6`` (screening length 1000 sites) keeps the system
            well posed without limiting the maze size that matters.
        conductivity: ``"relu"`` lets walls insulate exactly, so no current leaks through them
            however large the potential difference across them grows on large mazes.
        conductance_prior: initial strength ``s`` of the map "open site conducts, wall does
            not" (0: a random start). Without it the physics stays uninformative for a long
            plateau before training finds the conducting corridors; with it the corridors
            conduct from the first step and training refines the system.
    """

    def __init__(
        self,
        features: int = 32,
        fields: int = 4,
        layers: int = 1,
        encoder_layers: int = 2,
        edge_rank: int = 0,
        tol: float = 1e-5,
        max_iter: int | None = None,
        preconditioner: Literal["none", "jacobi", "elimination"] = "elimination",
        mass2: float | None = 1e-6,
        conductivity: Literal["softplus", "relu"] = "relu",
        conductance_prior: float = 4.0,
    ) -> None:
        super().__init__()
        self.encoder = conv_stack(3, features - 3, encoder_layers)
        self.blocks = nn.ModuleList(
            MetriplectorLayer(
                features,
                dim=2,
                fields=fields,
                solver="cg",
                edge_rank=edge_rank,
                tol=tol,
                max_iter=max_iter,
                preconditioner=preconditioner,
                coupling=False,
                mass2=mass2,
                conductivity=conductivity,
                external_source=True,
            )
            for _ in range(layers)
        )
        # A dipole per field, from the start and goal channels alone: no background charge, and
        # no net charge, so the equilibrium stays bounded as the screening vanishes.
        self.source = nn.Conv2d(1, fields * layers, 1, bias=False)
        if conductance_prior:
            self._conductance_prior(conductance_prior)
        self.head = nn.Sequential(
            nn.Conv2d(features, features, 1), nn.GELU(), nn.Conv2d(features, 1, 1)
        )

    def _conductance_prior(self, strength: float) -> None:
        """Start with open sites conducting and walls insulating: the conductivity head reads
        the raw open channel (the last-but-two feature) with weight ``2 s`` and bias ``-s``, so
        ``k = relu(+-s)`` (or softplus) on open and wall sites. Training refines it from there."""
        for block in self.blocks:
            weight, bias = block.head_parameters("kappa")
            with torch.no_grad():
                weight[: block.fields, -3] += 2 * strength
                bias[: block.fields] = -strength

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[RolloutReport]]:
        """Path logits ``(B, H, W)`` and, if asked, one report per layer."""
        lattice = Grid2D(*x.shape[-2:])
        h = torch.cat([self.encoder(x), x], 1)  # the heads also read the raw maze
        sources = self.source(x[:, 1:2] - x[:, 2:3]).chunk(len(self.blocks), dim=1)
        reports = []
        for block, source in zip(self.blocks, sources, strict=True):
            h, report = block(h, lattice, source, diagnostics)
            if report is not None:
                reports.append(report)
        return self.head(h).squeeze(1), reports
