"""The shared LightningModule: loss, per-stage torchmetrics, optimizer wiring, predict, and the
public hook through which callbacks ask for rollout diagnostics.

Tasks subclass ``MetriplectorTask`` and fill in the abstract template methods ``split_batch``,
``compute_loss`` and ``build_metrics`` (and ``predict_step`` / ``render_prediction`` where
predictions need more than the network output). The network is any module that satisfies
``TaskNetwork``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ..core import DynamicsReport


@runtime_checkable
class TaskNetwork(Protocol):
    """What a task needs of its network (pure torch; the project's networks all satisfy it).

    ``forward(x, diagnostics)`` returns the output and a list of ``DynamicsReport``, one per
    Metriplector layer, empty unless ``diagnostics`` is asked for (monitors and images read them).
    """

    def forward(
        self, x: Tensor, diagnostics: bool = False
    ) -> tuple[Tensor, list[DynamicsReport]]: ...


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class MetriplectorTask(L.LightningModule, ABC):
    """Base task: the network, its optimizer, metrics per stage and per test set.

    Args:
        network: the task network (pure torch, a ``TaskNetwork``): one of
            ``lit_metriplector.networks`` (e.g. ``MazeNetwork``) or your own module.
        optimizer: optimizer factory, called with the parameters.
        lr_scheduler: optional scheduler factory, stepped every optimizer step.
        compile: compile the network in place with ``torch.compile`` (the module itself is never
            compiled: Lightning's logging does not survive it).
        test_names: names of the test sets, in the order of the test dataloaders; metrics are
            logged as ``test/<name>/<metric>``. Linked from the DataModule by the CLI.
    """

    def __init__(
        self,
        network: TaskNetwork,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
        test_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        # Under LightningCLI the hyperparameters are the parsed config, where the network is a
        # class_path / init_args dict: keeping it lets load_from_checkpoint(path) rebuild it. A
        # module passed in Python is no hyperparameter (its weights are in the state dict), so
        # it is dropped; load_from_checkpoint(path, network=...) then takes it back.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Attribute 'network' is an instance of `nn.Module`")
            self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        if isinstance(self.hparams.get("network"), nn.Module):
            del self.hparams["network"]
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.test_names = list(test_names) if test_names else ["test"]
        self.train_metrics = self.build_metrics().clone(prefix="train/")
        self.val_metrics = self.build_metrics().clone(prefix="val/")
        self.test_metrics = nn.ModuleList(
            self.build_metrics().clone(prefix=f"test/{name}/") for name in self.test_names
        )

    # --- template methods ------------------------------------------------------------------

    @abstractmethod
    def build_metrics(self) -> MetricCollection:
        """The metrics of the task; cloned per stage and per test set."""

    @abstractmethod
    def split_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(inputs, target)`` of a batch."""

    @abstractmethod
    def compute_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """The training loss of the network's output against the target."""

    def render_prediction(self, batch: Any, output: Tensor) -> Tensor | None:
        """Pictures of the predictions against the targets, ``(B, 3, H, W)`` uint8, for the
        image logger; ``None``: the task has none."""
        return None

    # --- the loop ----------------------------------------------------------------------------

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        return self.network(x, diagnostics=diagnostics)

    def configure_model(self) -> None:
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.network.compile()
            self._compiled = True

    def on_fit_start(self) -> None:
        if self.logger is not None:
            self.logger.log_hyperparams({"parameters": count_parameters(self.network)})

    def _metrics(self, stage: str, dataloader_idx: int) -> MetricCollection:
        if stage == "test":
            if dataloader_idx >= len(self.test_metrics):
                raise IndexError(
                    f"test dataloader {dataloader_idx} has no name: pass "
                    f"test_names with one name per test set"
                )
            return self.test_metrics[dataloader_idx]
        return self.train_metrics if stage == "train" else self.val_metrics

    def _shared_step(self, batch: Any, stage: str, dataloader_idx: int = 0) -> Tensor:
        inputs, target = self.split_batch(batch)
        output, _ = self(inputs)
        loss = self.compute_loss(output, target)
        metrics = self._metrics(stage, dataloader_idx)
        metrics(output.detach(), target)  # forward, not update: on_step logging needs its value
        prefix = metrics.prefix
        on_step = stage == "train"
        kw = dict(
            on_step=on_step,
            on_epoch=True,
            batch_size=target.shape[0],
            add_dataloader_idx=False,
            sync_dist=stage != "train",
        )
        self.log(f"{prefix}loss", loss, prog_bar=stage != "test", **kw)
        self.log_dict(metrics, prog_bar=stage == "val", **{**kw, "sync_dist": False})
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self._shared_step(batch, "val", dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        return self._shared_step(batch, "test", dataloader_idx)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        inputs, _ = self.split_batch(batch)
        return self(inputs)[0]

    @torch.no_grad()
    def rollout_diagnostics(self, batch: Any) -> tuple[Tensor, list[DynamicsReport]]:
        """Run the network on ``batch`` with every diagnostic on (energy and entropy ledgers,
        CG iterations and residuals, final fields): the output and one report per Metriplector
        layer. For callbacks; does not touch metrics or the autograd graph."""
        inputs, _ = self.split_batch(batch)
        inputs = inputs.to(self.device)
        training = self.training
        self.eval()
        try:
            return self(inputs, diagnostics=True)
        finally:
            self.train(training)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        total = getattr(scheduler, "total_steps", None)  # OneCycleLR fails when stepped past it
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        if total is not None and max_steps > total:
            raise ValueError(
                f"lr_scheduler total_steps={total} is less than trainer.max_steps={max_steps}: "
                f"the schedule would end mid-run; set both to the same value"
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
