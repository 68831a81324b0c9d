"""Baselines for image classification, run side by side with ``ImageMetriplector`` on the same
data loader:

- ``WideResNet``: WRN-d-k (Zagoruyko & Komodakis, 2016), pre-activation basic blocks;
  WRN-40-2 has 2.2M parameters on CIFAR-100.
- ``DepthwiseTwin``: the skeleton of ``ImageMetriplector`` (stem, stages, downsampling, the
  same context convolutions and feed-forwards, classifier) with each Metriplector layer replaced
  by depthwise convolutions, ``1x1 -> GELU -> depthwise 3x3 -> GELU -> 1x1``, whose hidden
  width is solved so the whole network has the Metriplector's parameter count (within 1%): what
  the physics adds at equal parameters.

Both satisfy ``TaskNetwork``: ``forward(x, diagnostics=False) -> (logits, [])``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import DynamicsReport
from .images import ImageConfig, ImageMetriplector, StagedImageNetwork
from .layers import Pointwise


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3, plus a 1x1
    shortcut convolution where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.shortcut = (
            None if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride, bias=False)
        )

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = F.relu(self.bn2(y))
        if self.dropout:
            y = F.dropout(y, self.dropout, self.training)
        y = self.conv2(y)
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for small images (CIFAR: 32x32; any size works).

    Args:
        in_channels: image channels.
        num_classes: classes.
        depth: ``6 n + 4`` (40: six blocks per stage).
        widen_factor: ``k``; the stages are ``16k, 32k, 64k`` wide.
        dropout: between the two convolutions of each block.
        base: width of the stem, and of ``k = 1``'s first stage (16 in the paper).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 100,
        depth: int = 40,
        widen_factor: int = 2,
        dropout: float = 0.0,
        base: int = 16,
    ) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = [base, base * widen_factor, 2 * base * widen_factor, 4 * base * widen_factor]
        self.stem = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks = []
        for stage in range(3):
            for i in range(n):
                cin = widths[stage] if i == 0 else widths[stage + 1]
                stride = 2 if stage and i == 0 else 1
                blocks.append(_WideBlock(cin, widths[stage + 1], stride, dropout))
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.BatchNorm2d(widths[-1])
        self.classifier = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, num_classes)``; no physics, so no reports."""
        x = F.relu(self.norm(self.blocks(self.stem(x))))
        return self.classifier(x.mean((-2, -1))), []


class DepthwiseMixer(nn.Module):
    """``1x1 (width -> hidden) -> GELU -> depthwise 3x3 -> GELU -> 1x1 (hidden -> width)``, in
    the place of a Metriplector layer; returns ``(update, None, None)`` like its mixer."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.expand = Pointwise(width, hidden)
        self.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.project = Pointwise(hidden, width)

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, None, None]:
        y = F.gelu(self.spatial(F.gelu(self.expand(x))))
        return self.project(y), None, None


class DepthwiseTwin(StagedImageNetwork):
    """``ImageMetriplector``'s skeleton, depthwise convolutions instead of the physics.

    At the parameter count of the ``ImageMetriplector`` built from the same ``config`` (its
    physics settings only size that match). See the module docstring.

    Args:
        in_channels: image channels.
        num_classes: classes.
        config: the architecture of the Metriplector it twins (``ImageConfig``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 100,
        # Frozen, so one shared default is safe; a dataclass default (not None) lets the CLI's
        # help list the fields.
        config: ImageConfig = ImageConfig(),  # noqa: B008
    ) -> None:
        with torch.device("meta"):  # only counted, never run
            twin_of = ImageMetriplector(in_channels, num_classes, config)
        widths, depths = config.widths, config.depths
        # Per stage, the hidden width whose mixer has the Metriplector mixer's parameters; the
        # classifier reads no charges here, so the last stage absorbs that difference.
        mixers = [count(blocks[0].mixer) for blocks in twin_of.stages]
        hidden = [
            max(1, round((m - w) / (2 * w + 11))) for m, w in zip(mixers, widths, strict=True)
        ]
        charges = count(twin_of.classifier) - (widths[-1] + 1) * num_classes
        per_unit = (2 * widths[-1] + 11) * depths[-1]
        hidden[-1] = max(1, hidden[-1] + round(charges / per_unit))

        def mixer(stage: int, width: int, c: int) -> nn.Module:
            return DepthwiseMixer(width, hidden[stage])

        super().__init__(
            in_channels,
            num_classes,
            widths,
            depths,
            config.fields,
            mixer,
            config.mlp_ratio,
            config.context_kernel,
            config.drop_path,
            config.dropout,
            stem_stride=config.stem_stride,
        )
        self.config = config
