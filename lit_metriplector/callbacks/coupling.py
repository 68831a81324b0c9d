"""``CouplingMonitor``: what the learned coupling graph has become, in TensorBoard.

Zero structural injection means the network must discover Sudoku's constraint graph in its
shared coupling ``K`` (``(H, 81, 81)``). Every N steps this callback draws ``K`` (per head and
the element-wise maximum over graphs, cells in row-major order, so rows show as 9x9 blocks on the
diagonal, columns as stripes every 9 cells, boxes as 3x3 patterns) and logs how well it recovers
the true graph (``metrics.graph_recovery``): the AUC and top-20 precision of the graphs' maximum
against the 20 peers of every cell, each head's AUC against rows, columns and boxes, its best
kind, and whether the graphs separate the three kinds.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from ..metrics.graph import graph_recovery
from .images import intensity, tile


def coupling_image(coupling: Tensor, zoom: int = 3) -> Tensor:
    """``(3, h, w)`` in ``[0, 1]``: each head's ``81 x 81`` coupling, then their maximum, side by
    side, each scaled to its own maximum and enlarged ``zoom`` times."""
    coupling = coupling.detach().float().cpu()
    panels = [*coupling, coupling.amax(0)]
    big = [p.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1) for p in panels]
    return tile([intensity(p) for p in big], gap=2 * zoom)


def separated(scores: dict, threshold: float) -> bool:
    """Whether every kind (rows, columns, boxes) is the best match of some head whose AUC
    against it reaches ``threshold``: the graphs have split the graph into its kinds."""
    found = set()
    for head, kind in enumerate(scores["head_kind"]):
        if float(scores["head_kind_auc"][head, scores["kinds"].index(kind)]) >= threshold:
            found.add(kind)
    return found == set(scores["kinds"])


def recovery_metrics(coupling: Tensor, threshold: float = 0.98, prefix: str = "coupling") -> dict:
    """Scalars of ``graph_recovery`` of a ``(H, 81, 81)`` coupling against Sudoku's peers."""
    from ..datasets.sudoku.structure import peers  # the truth, for scoring only

    scores = graph_recovery(coupling.detach().float().cpu(), peers())
    metrics = {
        f"{prefix}/auc": scores["auc"],
        f"{prefix}/top20_precision": scores["top20_precision"],
        f"{prefix}/kinds_separated": float(separated(scores, threshold)),
    }
    for h in range(coupling.shape[0]):
        metrics[f"{prefix}/head{h}/auc"] = float(scores["head_auc"][h])
        metrics[f"{prefix}/head{h}/kind"] = float(scores["kinds"].index(scores["head_kind"][h]))
        for k, kind in enumerate(scores["kinds"]):
            metrics[f"{prefix}/head{h}/auc_{kind}"] = float(scores["head_kind_auc"][h, k])
    return metrics


class CouplingMonitor(L.Callback):
    """Every N optimizer steps (and at the end of fit), logs the network's coupling
    (``network.coupling_matrix()``, ``(H, 81, 81)``) as a TensorBoard image and the scalars of
    its recovery of the constraint graph (``coupling/auc``, ``coupling/top20_precision``,
    ``coupling/kinds_separated``, ``coupling/head<h>/{auc, kind, auc_rows, auc_columns,
    auc_boxes}``; ``kind`` is 0 rows, 1 columns, 2 boxes). Writes through the loggers
    (``log_metrics``, ``experiment.add_image``), never ``pl_module.log``. Networks without a
    coupling (the RRN) are skipped with a note.

    Args:
        every_n_steps: interval in optimizer steps.
        separation_threshold: a head's AUC against its best kind needed to count as separating
            that kind.
        zoom: pixels per coupling entry in the image.
    """

    def __init__(
        self, every_n_steps: int = 200, separation_threshold: float = 0.98, zoom: int = 3
    ) -> None:
        if every_n_steps < 1:
            raise ValueError("every_n_steps must be positive")
        self.every_n_steps = every_n_steps
        self.separation_threshold = separation_threshold
        self.zoom = zoom
        self.last_step = -1
        self._warned = False

    def _coupling(self, pl_module) -> Tensor | None:
        network = getattr(pl_module, "network", pl_module)
        get = getattr(network, "coupling_matrix", None)
        if get is None:
            if not self._warned:
                rank_zero_info("CouplingMonitor: the network has no coupling_matrix(), skipped")
                self._warned = True
            return None
        with torch.no_grad():
            return get()

    def log_coupling(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step == self.last_step or not trainer.is_global_zero:
            return
        coupling = self._coupling(pl_module)
        if coupling is None:
            return
        self.last_step = step
        metrics = recovery_metrics(coupling, self.separation_threshold)
        image = None
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if isinstance(logger, TensorBoardLogger):
                if image is None:
                    image = coupling_image(coupling, self.zoom)
                logger.experiment.add_image("coupling/graph", image, step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.log_coupling(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.log_coupling(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_step = state_dict["last_step"]
