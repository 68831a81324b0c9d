"""Pictures of the physics in TensorBoard: the fields, where current flows, and the prediction
against the target."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from ..core import DynamicsReport
from .probe import ProbeCallback


def diverging(x: Tensor, scale: float | None = None) -> Tensor:
    """Blue (``-scale``) - white (0) - red (``+scale``) image ``(3, *x.shape)`` in ``[0, 1]``;
    ``scale`` defaults to the largest magnitude."""
    scale = float(x.abs().max()) if scale is None else scale
    x = x / max(scale, 1e-12)
    pos, neg = x.clamp(min=0), (-x).clamp(min=0)
    return torch.stack([1 - neg, 1 - pos - neg, 1 - pos]).clamp(0, 1)


def intensity(x: Tensor, scale: float | None = None) -> Tensor:
    """Black (0) - red - yellow - white (``scale``, default the max) ramp ``(3, *x.shape)`` for
    magnitudes."""
    scale = float(x.max()) if scale is None else scale
    x = (x / max(scale, 1e-12)).clamp(0, 1)
    return torch.stack([(3 * x).clamp(max=1), (3 * x - 1).clamp(0, 1), (3 * x - 2).clamp(0, 1)])


def tile(images: list[Tensor], gap: int = 1) -> Tensor:
    """Images ``(3, h, w)`` side by side with a grey gap."""
    h = max(i.shape[1] for i in images)
    sep = torch.full((3, h, gap), 0.5)
    row = []
    for image in images:
        pad = torch.full((3, h - image.shape[1], image.shape[2]), 0.5)
        row += [torch.cat([image, pad], 1), sep]
    return torch.cat(row[:-1], 2)


def enlarge(image: Tensor, size: int = 384) -> Tensor:
    """Nearest-neighbour upscaling of ``(3, h, w)`` until the longer side is about ``size``
    pixels: at one pixel per site a 15x15 maze is a speck in TensorBoard."""
    factor = max(1, size // max(image.shape[-2:]))
    return image.repeat_interleave(factor, -2).repeat_interleave(factor, -1)


def with_legend(image: Tensor, text: str, ramp: Tensor | None = None) -> Tensor:
    """``image`` ``(3, H, W)`` in ``[0, 1]`` above a strip with a colour bar (``ramp``,
    ``(3, n)`` colours from low to high) and a line of text naming what the colours mean."""
    width = image.shape[-1]
    strip = Image.new("RGB", (width, 24 if ramp is not None else 14), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    top = 0
    if ramp is not None:
        columns = ramp[:, torch.linspace(0, ramp.shape[1] - 1, width).round().long()]
        bar = (columns.T * 255).round().to(torch.uint8).numpy()
        strip.paste(Image.fromarray(np.repeat(bar[None], 8, 0)), (0, 0))
        top = 10
    draw.text((1, top), text, fill=(0, 0, 0), font=ImageFont.load_default())
    legend = torch.from_numpy(np.array(strip)).permute(2, 0, 1).float() / 255
    return torch.cat([image, legend], 1)


def field_panels(report: DynamicsReport, sample: int) -> dict[str, Tensor]:
    """Readable images of one sample: the fields ``phi_a`` side by side on one diverging scale,
    and on lattices with directions the current magnitude ``<|kappa grad phi_a|>`` per field,
    each enlarged and with its colour bar and scale."""
    system, phi = report.system, report.state.phi.detach().float()
    lattice = system.lattice
    fields = phi[sample]
    if lattice.dim != 2:  # chains and dense graphs: fields stacked as rows
        fields = fields.reshape(fields.shape[0], -1, 1)
    top = float(fields.abs().max())
    ramp = torch.linspace(-1, 1, 64)
    panels = {
        "phi": with_legend(
            enlarge(tile([diverging(f, top) for f in fields])),
            f"phi: -{top:.3g} .. 0 .. +{top:.3g}",
            diverging(ramp, 1.0),
        )
    }
    if lattice.dim == 2:
        kappa = system.kappa.detach().float()
        current = lattice.edge_to_site((kappa * lattice.grad(phi)).abs())[sample]
        top = float(current.max())
        panels["current"] = with_legend(
            enlarge(tile([intensity(c, top) for c in current])),
            f"|current|: 0 .. {top:.3g}",
            intensity(ramp.abs(), 1.0)[:, 32:],
        )
    return panels


class FieldImageLogger(ProbeCallback):
    """Every N steps, images of the probe batch in TensorBoard: per layer the fields and the
    current they carry, and the task's picture of prediction against target (if its
    ``render_prediction`` draws one). Without a TensorBoard logger it does nothing (and says so
    once).

    Args:
        every_n_steps: interval in optimizer steps.
        probe_size: samples in the probe batch.
        max_images: how many probe samples to draw.
    """

    def __init__(self, every_n_steps: int = 200, probe_size: int = 4, max_images: int = 2):
        super().__init__(every_n_steps, probe_size)
        self.max_images = max_images
        self._warned = False

    def on_probe(
        self, trainer, pl_module, batch: Any, output: Tensor, reports: list[DynamicsReport]
    ) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            if not self._warned:
                rank_zero_info("FieldImageLogger: no TensorBoard logger, images are skipped")
                self._warned = True
            return
        step = trainer.global_step
        predictions = pl_module.render_prediction(batch, output)
        count = min(self.max_images, output.shape[0])
        for logger in loggers:
            for n in range(count):
                for i, report in enumerate(reports):
                    for name, image in field_panels(report, n).items():
                        logger.experiment.add_image(f"fields/layer{i}/{name}/{n}", image, step)
                if predictions is not None:
                    picture = enlarge(predictions[n].float() / 255)
                    picture = with_legend(picture, pl_module.prediction_legend)
                    logger.experiment.add_image(f"prediction/{n}", picture, step)
