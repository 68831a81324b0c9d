"""Base for callbacks that look at the physics every N steps on a fixed probe batch."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only
from lightning_utilities.core.apply_func import apply_to_collection
from torch import Tensor

from ..core import DynamicsReport


def _slice(batch: Any, size: int) -> Any:
    return apply_to_collection(batch, Tensor, lambda t: t[:size].detach().cpu().clone())


class ProbeCallback(L.Callback):
    """Every ``every_n_steps`` optimizer steps, run the model with diagnostics on a fixed probe
    batch (the first ``probe_size`` samples of the first training batch) and hand the result to
    ``on_probe``. Runs on global rank zero only; the probe batch is saved in checkpoints so a
    resumed run keeps looking at the same samples.

    Args:
        every_n_steps: probe interval in optimizer steps.
        probe_size: number of samples in the probe batch.
    """

    def __init__(self, every_n_steps: int = 50, probe_size: int = 8) -> None:
        if every_n_steps < 1 or probe_size < 1:
            raise ValueError("every_n_steps and probe_size must be positive")
        self.every_n_steps = every_n_steps
        self.probe_size = probe_size
        self.probe: Any = None
        self.last_step = -1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.probe is None:
            self.probe = _slice(batch, self.probe_size)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or step == self.last_step or not trainer.is_global_zero:
            return
        self.last_step = step
        probe = apply_to_collection(self.probe, Tensor, lambda t: t.to(pl_module.device))
        with trainer.precision_plugin.forward_context():  # the precision training runs in
            output, reports = pl_module.rollout_diagnostics(probe)
        self.on_probe(trainer, pl_module, probe, output, reports)

    def on_probe(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        output: Tensor,
        reports: list[DynamicsReport],
    ) -> None:
        raise NotImplementedError

    @staticmethod
    @rank_zero_only
    def log_scalars(trainer: L.Trainer, metrics: dict[str, float]) -> None:
        """Write straight through the loggers: ``pl_module.log`` at sparse steps would re-emit
        stale values at every logging step in between."""
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def state_dict(self) -> dict[str, Any]:
        return {"probe": self.probe, "last_step": self.last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.probe = state_dict["probe"]
        self.last_step = state_dict["last_step"]
