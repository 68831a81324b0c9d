"""Monitors: energy conservation and entropy production during the rollout, learning rates."""

from __future__ import annotations

from typing import Any, Literal

from lightning.pytorch import callbacks as lightning_callbacks
from torch import Tensor

from ..core import DynamicsReport
from .probe import ProbeCallback


class EnergyMonitor(ProbeCallback):
    """How well the rollout keeps its energy ledger, every N steps on the probe batch.

    For integrator layers: the largest relative drift of ``E - W_ext`` over the rollout
    (``physics/layer<i>/energy_drift``, worst sample). On the CG branch the ledger holds by
    construction (``Delta S`` is computed in closed form), so it reports how far the solve is from
    equilibrium instead: the final relative residual (worst sample) and the CG iterations (mean
    and max).
    """

    def on_probe(
        self, trainer, pl_module, batch: Any, output: Tensor, reports: list[DynamicsReport]
    ) -> None:
        metrics = {}
        for i, report in enumerate(reports):
            key = f"physics/layer{i}"
            if report.ledger is not None:
                metrics[f"{key}/energy_drift"] = float(report.ledger.relative_drift().max())
            if report.solve is not None:
                iterations = report.solve.iterations.float()
                metrics[f"{key}/cg_residual"] = float(report.solve.residual.max())
                metrics[f"{key}/cg_iterations"] = float(iterations.mean())
                metrics[f"{key}/cg_iterations_max"] = float(iterations.max())
        self.log_scalars(trainer, metrics)


class EntropyMonitor(ProbeCallback):
    """Entropy produced by the rollout, every N steps on the probe batch.

    Logs the total ``Delta S`` (mean over the probe samples) and the smallest per-step
    ``Delta S`` of any sample (for the CG branch the one step is the whole relaxation). The
    smallest must never be negative; steps where it is (beyond ``tolerance`` relative to the
    total) are counted in ``physics/entropy_violations``, a count kept across resumes.

    Args:
        every_n_steps: probe interval in optimizer steps.
        probe_size: number of samples in the probe batch.
        tolerance: relative rounding allowance before a negative step counts as a violation.
    """

    def __init__(
        self, every_n_steps: int = 50, probe_size: int = 8, tolerance: float = 1e-6
    ) -> None:
        super().__init__(every_n_steps, probe_size)
        self.tolerance = tolerance
        self.violations = 0

    def on_probe(
        self, trainer, pl_module, batch: Any, output: Tensor, reports: list[DynamicsReport]
    ) -> None:
        metrics = {}
        for i, report in enumerate(reports):
            key = f"physics/layer{i}"
            produced = report.entropy_produced
            steps = produced[None] if report.ledger is None else report.ledger.entropy_production()
            smallest = steps.min()
            metrics[f"{key}/entropy_produced"] = float(produced.mean())
            metrics[f"{key}/entropy_step_min"] = float(smallest)
            if smallest < -self.tolerance * float(produced.abs().max().clamp_min(1e-30)):
                self.violations += 1
        metrics["physics/entropy_violations"] = float(self.violations)
        self.log_scalars(trainer, metrics)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "violations": self.violations}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.violations = state_dict["violations"]


class LearningRateLogger(lightning_callbacks.LearningRateMonitor):
    """Lightning's ``LearningRateMonitor`` (the learning rate per optimizer step in the logs),
    except that a run without a logger (the debug overlay) skips it instead of failing.

    Args:
        logging_interval: ``"step"`` or ``"epoch"``.
        log_momentum: also log the momentum (or Adam's beta1).
        log_weight_decay: also log the weight decay.
    """

    def __init__(
        self,
        logging_interval: Literal["step", "epoch"] | None = "step",
        log_momentum: bool = False,
        log_weight_decay: bool = False,
    ) -> None:
        super().__init__(logging_interval, log_momentum, log_weight_decay)

    def on_train_start(self, trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.loggers:
            super().on_train_epoch_start(trainer, *args, **kwargs)
