"""Pictures of the physics in TensorBoard: the fields, where current flows, and the prediction
against the target."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ..core import DynamicsReport
from .probe import ProbeCallback


def diverging(x: Tensor) -> Tensor:
    """Blue (negative) - white - red (positive) image ``(3, *x.shape)`` in ``[0, 1]``, scaled by
    the largest magnitude."""
    x = x / x.abs().max().clamp_min(1e-12)
    pos, neg = x.clamp(min=0), (-x).clamp(min=0)
    return torch.stack([1 - neg, 1 - pos - neg, 1 - pos]).clamp(0, 1)


def intensity(x: Tensor) -> Tensor:
    """Black - red - yellow - white ramp ``(3, *x.shape)`` for magnitudes, scaled to the max."""
    x = (x / x.max().clamp_min(1e-12)).clamp(0, 1)
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


def field_panels(report: DynamicsReport, sample: int) -> dict[str, Tensor]:
    """Images of one sample: each field ``phi_a`` (diverging), and on lattices with directions
    the current magnitude ``<|kappa grad phi_a|>`` per field."""
    system, phi = report.system, report.state.phi.float()
    lattice = system.lattice
    fields = phi[sample]
    if lattice.dim != 2:  # chains and dense graphs: fields stacked as rows
        return {"phi": diverging(fields.reshape(fields.shape[0], -1))}
    panels = {"phi": tile([diverging(f) for f in fields])}
    current = lattice.edge_to_site((system.kappa.float() * lattice.grad(phi)).abs())[sample]
    panels["current"] = tile([intensity(c) for c in current])
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
                    logger.experiment.add_image(f"prediction/{n}", predictions[n], step)
