"""Image classification on the full metriplectic branch (docs/architecture.md).

A stem, then stages of Metriplector blocks on ``Grid2D`` (one site per pixel), a downsampling
convolution between stages, and a classifier that reads the pooled features and the Noether
charges (spatial means of ``T``) of the last block::

    x --stem--> [block]*d1 --down--> [block]*d2 --down--> ... --> pool(x), charges --> logits

    block:  y = context(norm1(x))                       depthwise 3x3: each site sees its
                                                        neighbourhood when it configures
            configure(y) -> kappa per edge, m^2, rho, gamma, Gamma, phi0   (the image configures)
            rollout: steps of euler or strang, learned W (coupling) and G (skew rotation)
            x = x + proj(asinh T^{mu nu})               T per site, 6 components per field
            x = x + mlp(norm2(x))

Stable by construction. The coefficients are bounded (``Parametrization(max_rate, min_damping)``):
every rate lies in ``[0, max_rate]``, friction and mobility in ``[min_damping, 1] max_rate``, and
the learned step is capped below the integrator's stability limit on the 4-neighbour grid
(``core.layer.stable_dt``): explicit Euler then never raises ``H`` at any step, so no depth or step
count blows up; strang's implicit mobility is unconditionally stable and its leapfrog stays below
``dt omega_max < 2``.

Fast path. The blocks are plain ``MetriplectorLayer``s: on ``Grid2D`` rollouts they take the
core's fused backend (``core.grid``) by themselves, and ``mix`` gives the block the update, the
report and the Noether charges in one pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..core import (
    CGOptions,
    DynamicsReport,
    MetriplectorLayer,
    Parametrization,
    Rollout,
    stable_dt,
)
from .layers import DropPath, fast_asinh, pointwise_mlp

Integrator = Literal["euler", "strang"]


class Block(nn.Module):
    """Pre-norm residual block: ``x + mixer(context(norm1(x)))``, then ``x + mlp(norm2(x))``.
    The mixer is a ``MetriplectorLayer`` (its fused grid path) or, in the twin, depthwise
    convolutions; it returns ``(update, report, charges)``."""

    def __init__(
        self,
        width: int,
        mixer: nn.Module,
        mlp_ratio: float,
        context_kernel: int,
        drop_path: float,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(width)
        self.context = (
            nn.Conv2d(width, width, context_kernel, padding=context_kernel // 2, groups=width)
            if context_kernel
            else nn.Identity()
        )
        self.mixer = mixer
        self.norm2 = nn.BatchNorm2d(width)
        self.mlp = pointwise_mlp(width, mlp_ratio)
        self.drop = DropPath(drop_path)

    def forward(
        self, x: Tensor, diagnostics: bool = False
    ) -> tuple[Tensor, DynamicsReport | None, Tensor | None]:
        update, report, charges = self.mixer(self.context(self.norm1(x)), diagnostics)
        x = x + self.drop(update)
        return x + self.drop(self.mlp(self.norm2(x))), report, charges


class _Mixer(nn.Module):
    """Adapts ``MetriplectorLayer.mix`` to the block's mixer call."""

    def __init__(self, layer: MetriplectorLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor, diagnostics: bool = False):
        return self.layer.mix(x, diagnostics)


def check_stages(widths: Sequence[int], depths: Sequence[int], fields: Sequence[int]) -> None:
    """Raises ``ValueError`` unless there is at least one stage and one entry per stage."""
    if not len(widths) == len(depths) == len(fields) or not widths:
        raise ValueError(
            f"widths, depths and fields need one entry per stage, got {list(widths)}, "
            f"{list(depths)}, {list(fields)}"
        )


MixerFactory = Callable[[int, int, int], nn.Module]  # (stage, width, fields) -> mixer


class StagedImageNetwork(nn.Module):
    """The skeleton shared by ``ImageMetriplector`` and its depthwise twin: stem, stages of
    blocks with a downsampling convolution between stages, pooled classifier.

    Args:
        in_channels: image channels.
        num_classes: classes.
        widths: feature width per stage.
        depths: blocks per stage.
        fields: fields per stage (what the mixer factory is told).
        mixer: builds each block's mixer from ``(stage, width, fields)``.
        mlp_ratio: hidden width of the blocks' feed-forward, relative to the width.
        context_kernel: depthwise convolution before each mixer (0: none).
        drop_path: stochastic depth of the last block (linearly less before it).
        dropout: before the classifier.
        charges: features of the last block's Noether charges fed to the classifier.
        stem_stride: stride of the stem convolution (2 halves the grid of the first stage).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        widths: Sequence[int],
        depths: Sequence[int],
        fields: Sequence[int],
        mixer: MixerFactory,
        mlp_ratio: float,
        context_kernel: int,
        drop_path: float,
        dropout: float,
        charges: int = 0,
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        check_stages(widths, depths, fields)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
        )
        total, index = sum(depths), 0
        self.stages = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for stage, (width, depth, c) in enumerate(zip(widths, depths, fields, strict=True)):
            if stage:
                self.downsample.append(
                    nn.Sequential(
                        nn.BatchNorm2d(widths[stage - 1]),
                        nn.Conv2d(widths[stage - 1], width, 2, stride=2),
                    )
                )
            blocks = nn.ModuleList()
            for _ in range(depth):
                rate = drop_path * index / max(total - 1, 1)
                blocks.append(Block(width, mixer(stage, width, c), mlp_ratio, context_kernel, rate))
                index += 1
            self.stages.append(blocks)
        self.norm = nn.BatchNorm2d(widths[-1])
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(widths[-1] + charges, num_classes)

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, num_classes)`` of images ``(B, C, H, W)`` (float, normalised) and, if
        asked, one report per Metriplector block."""
        x = self.stem(x)
        reports: list[DynamicsReport] = []
        charges = None
        for stage, blocks in enumerate(self.stages):
            if stage:
                x = self.downsample[stage - 1](x)
            for block in blocks:
                x, report, charges = block(x, diagnostics)
                if report is not None:
                    reports.append(report)
        features = [self.norm(x).mean((-2, -1))]
        if charges is not None:
            features.append(fast_asinh(charges.flatten(1)).to(features[0].dtype))
        return self.classifier(self.dropout(torch.cat(features, 1))), reports


@dataclass(frozen=True)
class ImageConfig:
    """The architecture of ``ImageMetriplector`` (and of its ``DepthwiseTwin``).

    One typed group, which the twin takes whole; the sizes the data decides (channels, classes)
    are not in it.

    Args:
        widths: feature width per stage.
        depths: blocks per stage.
        fields: fields ``C`` per block, per stage.
        steps: integrator steps per block.
        integrator: ``"euler"`` (the paper's) or ``"strang"``.
        dt: initial learned step; ``None``: the stability limit (capped below it either way).
        max_rate: bound of every configured rate (``Parametrization.max_rate``).
        min_damping: floor of friction and mobility, as a fraction of ``max_rate``.
        edge_rank: rank of the pair factor of the edge conductances.
        rotation: learn the skew channel rotation ``G``.
        coupling: learn the channel coupling ``W``.
        mlp_ratio: hidden width of the blocks' feed-forward, relative to the width.
        context_kernel: depthwise convolution before ``configure`` (0: pointwise).
        drop_path: stochastic depth of the last block.
        dropout: before the classifier.
        stem_stride: stride of the stem (2 halves the grid of the first stage).
        solver: CG settings of strang's implicit mobility steps.
    """

    widths: Sequence[int] = (64, 128, 256)
    depths: Sequence[int] = (2, 2, 2)
    fields: Sequence[int] = (8, 16, 32)
    steps: int = 8
    integrator: Integrator = "euler"
    dt: float | None = None
    max_rate: float = 1.0
    min_damping: float = 0.5
    edge_rank: int = 2
    rotation: bool = True
    coupling: bool = True
    mlp_ratio: float = 2.0
    context_kernel: int = 3
    drop_path: float = 0.0
    dropout: float = 0.0
    stem_stride: int = 1
    solver: CGOptions | None = None

    def __post_init__(self) -> None:
        for name in ("widths", "depths", "fields"):  # lists from YAML: immutable, hashable
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_stages(self.widths, self.depths, self.fields)


class ImageMetriplector(StagedImageNetwork):
    """Image classifier of Metriplector blocks on the full branch (see the module docstring).

    Args:
        in_channels: image channels (3 for CIFAR, 1 for Fashion-MNIST).
        num_classes: classes.
        config: the architecture (``ImageConfig``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 100,
        # Frozen, so one shared default is safe; a dataclass default (not None) lets the CLI's
        # help list the fields.
        config: ImageConfig = ImageConfig(),  # noqa: B008
    ) -> None:
        parametrization = Parametrization(
            edge_rank=config.edge_rank,
            coupling=config.coupling,
            max_rate=config.max_rate,
            min_damping=config.min_damping,
        )
        probe = Rollout("full", config.steps, config.integrator, 1.0, rotation=config.rotation)
        limit = stable_dt(parametrization, probe, degree=4)
        dynamics = Rollout(
            "full",
            config.steps,
            config.integrator,
            limit if config.dt is None else config.dt,
            rotation=config.rotation,
            solver=config.solver or CGOptions(tol=1e-5),
        )

        def mixer(stage: int, width: int, c: int) -> nn.Module:
            return _Mixer(
                MetriplectorLayer(
                    width, dim=2, fields=c, dynamics=dynamics, parametrization=parametrization
                )
            )

        super().__init__(
            in_channels,
            num_classes,
            config.widths,
            config.depths,
            config.fields,
            mixer,
            config.mlp_ratio,
            config.context_kernel,
            config.drop_path,
            config.dropout,
            charges=6 * config.fields[-1],
            stem_stride=config.stem_stride,
        )
        self.config = config

    def layers(self) -> list[MetriplectorLayer]:
        """The Metriplector layers, in order."""
        return [m for m in self.modules() if isinstance(m, MetriplectorLayer)]
