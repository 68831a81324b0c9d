"""Maze solver on the dissipative branch (docs/architecture.md, "Tasks").

The maze configures an unscreened Poisson system: walls are insulators, local convolutions
set the conductance of the open sites, and a dipole source sits at start (+) and goal (-). CG
finds the equilibrium; the stress-energy tensor marks where current flows, which in a perfect maze
is exactly the path (dead ends carry none). Every operation is local or a solve, so a model trained
on 15x15 mazes runs on any size. Two choices make it generalise: walls insulate exactly (nothing
leaks through them however large the potential across them grows with the maze), and there is
no screening (the current does not die out along long paths).

Mazes with loops (``fronts=True``): current splits over every route, so first two fronts of the
heat flow, released at the start and at the goal (``core.fronts``), find the sites where their
arrival times add up to the shortest length. The network then sees the maze pruned to those
sites (every other site a wall): the union of the shortest paths, where the current flows. The
fronts make the answer exact; the solve and the readout mark the pruned maze's open sites.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core import (
    CGOptions,
    DynamicsReport,
    Equilibrium,
    Grid2D,
    MetriplectorLayer,
    Parametrization,
    System,
    arrival_times,
    on_shortest_paths,
)
from ..datasets.mazes import Channel
from .layers import conv_stack

MAZE_SOLVER = CGOptions(tol=1e-5, preconditioner="elimination")


def channel(x: Tensor, name: Channel) -> Tensor:
    """One channel ``(B, 1, H, W)`` of encoded mazes ``x``."""
    return x[:, name : name + 1]


def dipole(x: Tensor) -> Tensor:
    """Unit source at the start and unit sink at the goal, ``(B, 1, H, W)``, of mazes ``x``."""
    return channel(x, Channel.START) - channel(x, Channel.GOAL)


def ideal_system(x: Tensor, wall: float = 0.0, mass2: float = 0.0) -> System:
    """The system a maze should configure, by hand: conductance 1 between open sites (``wall``
    on every other edge), a unit source at the start and a unit sink at the goal, screening
    ``mass2``. For ``wall = mass2 = 0`` all current flows along the path. ``x``: ``(B, 3, H, W)``
    encoded with the channels of ``datasets.mazes.Channel``."""
    lattice = Grid2D(*x.shape[-2:])
    tail, head = lattice.endpoints(channel(x, Channel.OPEN))
    kappa = wall + (1 - wall) * tail * head
    source = dipole(x)
    return System(
        lattice, kappa, mass2=torch.full_like(source, mass2) if mass2 else None, source=source
    )


def shortest_path_sites(x: Tensor) -> Tensor:
    """Bool ``(B, H, W)``: the sites on a shortest start-goal path of mazes ``x``, from the
    arrival times of two fronts of the heat flow of ``ideal_system`` (``core.fronts``)."""
    system = ideal_system(x)
    ends = torch.cat([channel(x, Channel.START), channel(x, Channel.GOAL)], 1)
    arrival, _ = arrival_times(system.lattice, system.kappa, ends, targets=ends.flip(1))
    return on_shortest_paths(arrival)


class MazeNetwork(nn.Module):
    """Per-site path logits for mazes ``(B, 3, H, W)`` (channels open / start / goal).

    Args:
        features: width of the site features.
        fields: number of fields solved for per layer.
        layers: Metriplector layers (each one a CG solve).
        encoder_layers: 3x3 convolutions before the first layer.
        edge_rank: rank of the pair factor of the conductance (0: site conductivities only).
        solver: settings of the CG solves; the ``"elimination"`` preconditioner is exact on a
            perfect maze's tree of open sites, so a solve takes a couple of iterations at any
            size.
        mass2: fixed screening mass (``None``: learned per site). The default 0 solves the
            unscreened (grounded) Poisson equation, which has no length scale to outgrow: any
            screening, learned or fixed, sets a decay length ``sqrt(kappa / mass2)`` that the
            conductances can shrink until it suits 15x15 mazes and is too short for larger ones.
        conductivity_floor: least conductivity of an open site; without one, training shrinks
            the conductances (only ``I^2 / kappa`` matters) until the solve breaks down.
        fronts: first prune the maze to its shortest paths, found by two fronts of the heat
            flow from start and goal (``core.fronts``); for mazes with loops. Costs one lattice
            step per site of the shortest path.
    """

    def __init__(
        self,
        features: int = 32,
        fields: int = 4,
        layers: int = 1,
        encoder_layers: int = 2,
        edge_rank: int = 0,
        solver: CGOptions = MAZE_SOLVER,
        mass2: float | None = 0.0,
        conductivity_floor: float = 0.1,
        fronts: bool = False,
    ) -> None:
        super().__init__()
        self.fronts = fronts
        self.encoder = conv_stack(3, features, encoder_layers)
        parametrization = Parametrization(
            edge_rank=edge_rank,
            conductivity_floor=conductivity_floor,
            mass2=mass2,
            coupling=False,
            source="input",
        )
        self.blocks = nn.ModuleList(
            MetriplectorLayer(
                features,
                dim=2,
                fields=fields,
                dynamics=Equilibrium(solver),
                parametrization=parametrization,
            )
            for _ in range(layers)
        )
        # A dipole per field, from the start and goal channels alone: no background charge, and
        # no net charge, so the equilibrium stays bounded however weak the screening.
        self.source = nn.Conv2d(1, fields * layers, 1, bias=False)
        self.head = nn.Sequential(
            nn.Conv2d(features, features, 1), nn.GELU(), nn.Conv2d(features, 1, 1)
        )

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Path logits ``(B, H, W)`` and, if asked, one report per layer."""
        lattice = Grid2D(*x.shape[-2:])
        if self.fronts:  # the maze pruned to its shortest paths, for the encoder and the solves
            pruned = channel(x, Channel.OPEN) * shortest_path_sites(x).unsqueeze(1)
            x = torch.cat([pruned, x[:, Channel.OPEN + 1 :]], 1)
        open_sites = channel(x, Channel.OPEN)
        features = self.encoder(x)
        sources = self.source(dipole(x)).chunk(len(self.blocks), dim=1)
        reports = []
        for block, source in zip(self.blocks, sources, strict=True):
            features, report = block(features, lattice, source, diagnostics, open_sites)
            if report is not None:
                reports.append(report)
        return self.head(features).squeeze(1), reports
