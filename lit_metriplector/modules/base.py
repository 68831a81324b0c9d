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

from ..core import DynamicsReport, SolveTally
from ..errors import ConfigError, DivergenceError
from .divergence import describe_reports, nonfinite_gradient


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

    Divergence policy: a non-finite training loss or gradient stops the run at once with a
    ``DivergenceError`` naming the step, the quantity (the loss, or the first parameter whose
    gradient is not finite) and the state of every Metriplector layer on that batch. Nothing is
    saved on the way out, so the last checkpoint written before it stays the last good one.
    (Under ``16-mixed`` precision the gradient scaler owns infinite gradients: it skips those
    steps itself, so only the loss is checked there.)

    Evaluating or predicting with weights that were neither trained nor loaded from a checkpoint
    warns loudly (the CLI refuses it).

    Arguments: see ``__init__``.
    """

    def __init__(
        self,
        network: TaskNetwork,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        compile: bool = False,
        test_names: list[str] | None = None,
    ) -> None:
        """The task around ``network``.

        Args:
            network: the task network (pure torch, a ``TaskNetwork``): one of
                ``lit_metriplector.networks`` (e.g. ``MazeNetwork``) or your own module.
            optimizer: optimizer factory, called with the parameters.
            lr_scheduler: optional scheduler factory, stepped every optimizer step.
            compile: compile the network in place with ``torch.compile`` (the module itself is
                never compiled: Lightning's logging does not survive it).
            test_names: names of the test sets, in the order of the test dataloaders; metrics are
                logged as ``test/<name>/<metric>``. Linked from the DataModule by the CLI.
        """
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
        self.test_names = list(test_names) if test_names else []
        self.train_metrics = self.build_metrics().clone(prefix="train/")
        self.val_metrics = self.build_metrics().clone(prefix="val/")
        # one unnamed test set (or one named "test") logs as test/<metric>, named ones as
        # test/<name>/<metric>
        named = self.test_names not in ([], ["test"])
        prefixes = [f"test/{name}/" for name in self.test_names] if named else ["test/"]
        self.test_metrics = nn.ModuleList(
            self.build_metrics().clone(prefix=prefix) for prefix in prefixes
        )
        self.weights_origin = "initial"  # then "trained" or "checkpoint"
        self.solve_tally = SolveTally()  # this task's fits count their solves here
        self._last_batch: Any = None

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

    def metric_context(self, inputs: Tensor) -> dict[str, Tensor]:
        """Keyword arguments for the metrics besides output and target (a metric collection
        passes each only to the metrics whose ``update`` takes it)."""
        return {}

    # What the colours of ``render_prediction``'s pictures mean, written under them.
    prediction_legend: str = ""

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

    # The name of the validation metric that summarises a run in TensorBoard's HPARAMS tab.
    hp_metric: str | None = None

    def on_fit_start(self) -> None:
        self.solve_tally.activate()
        if self.logger is not None:
            self.logger.log_hyperparams(self._recipe())

    def _recipe(self) -> dict[str, Any]:
        """The training recipe for the HPARAMS tab: size, optimizer and schedule settings."""
        recipe: dict[str, Any] = {"parameters": count_parameters(self.network)}
        for optimizer in self.trainer.optimizers[:1]:
            recipe["optimizer"] = type(optimizer).__name__
            group = optimizer.param_groups[0]
            for key in ("lr", "initial_lr", "weight_decay", "betas", "momentum", "eps"):
                if key in group:
                    recipe[f"optimizer/{key}"] = group[key]
        for config in self.trainer.lr_scheduler_configs[:1]:
            scheduler = config.scheduler
            recipe["lr_scheduler"] = type(scheduler).__name__
            for key in ("total_steps", "T_max", "step_size", "gamma"):
                if hasattr(scheduler, key):
                    recipe[f"lr_scheduler/{key}"] = getattr(scheduler, key)
        return recipe

    def on_fit_end(self) -> None:
        # A test after the fit logs into the fit's run; logging the hyperparameters again there
        # would make the logger write its placeholder hp_metric (-1) over the fit's real one.
        self._log_hyperparams = False
        if self._trainer is not None and self.trainer.datamodule is not None:
            self.trainer.datamodule._log_hyperparams = False
        SolveTally.deactivate()
        tally = self.solve_tally
        if tally.unconverged:
            warnings.warn(
                f"CG: {tally.unconverged} of {tally.samples} solved samples did not converge "
                f"during this fit (worst relative residual {tally.worst_residual:.2e}; per step "
                f"in solver/unconverged)",
                RuntimeWarning,
                stacklevel=2,
            )

    def on_train_start(self) -> None:
        self.weights_origin = "trained"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.weights_origin = "checkpoint"

    def _warn_if_untrained(self, stage: str) -> None:
        if self.weights_origin == "initial":
            warnings.warn(
                f"{stage} runs on the network's initial (untrained) weights: fit first or load a "
                f"checkpoint (load_from_checkpoint, or ckpt_path=...)",
                UserWarning,
                stacklevel=2,
            )

    def on_test_start(self) -> None:
        self._warn_if_untrained("test")

    def on_predict_start(self) -> None:
        self._warn_if_untrained("predict")

    def on_validation_epoch_end(self) -> None:
        value = self.trainer.callback_metrics.get(self.hp_metric) if self.hp_metric else None
        if value is not None and not self.trainer.sanity_checking:
            self.log("hp_metric", value, sync_dist=False)

    def _diverged(self, what: str) -> DivergenceError:
        """The error that stops a diverged run, with the physics of the offending batch."""
        state = ""
        if self._last_batch is not None:
            try:
                state = "; on that batch: " + describe_reports(
                    *self.rollout_diagnostics(self._last_batch)
                )
            except Exception as error:  # the diagnosis must not hide the divergence
                state = f"; the diagnostic pass failed too ({error})"
        return DivergenceError(
            f"training diverged at step {self.global_step}: {what}{state}. Nothing was saved "
            f"after it; lower the learning rate or add gradient clipping "
            f"(trainer.gradient_clip_val)"
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if str(self.trainer.precision).startswith("16"):
            return  # the gradient scaler skips steps with infinite gradients itself
        name = nonfinite_gradient(self)
        if name is not None:
            raise self._diverged(f"the gradient of {name} is not finite")

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
        # forward, not update: on_step logging needs its value
        metrics(output.detach(), target, **self.metric_context(inputs))
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
        self._last_batch = batch
        loss = self._shared_step(batch, "train")
        if not bool(torch.isfinite(loss)):
            raise self._diverged(f"the training loss is {loss.item()}")
        if self.solve_tally.samples:  # networks that solve: how many missed their tolerance
            unconverged = float(self.solve_tally.unconverged)
            self.log("solver/unconverged", unconverged, on_step=True, on_epoch=False)
        return loss

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

    def check_optimizer(self) -> None:
        """Build the optimizer once on a stand-in parameter, so that a value it refuses (a
        negative learning rate, say) stops the run in one line before anything is written."""
        try:
            self.optimizer([nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as error:
            raise ConfigError(f"optimizer: {error}") from error

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters())
        if self.lr_scheduler is None:
            return optimizer
        try:
            scheduler = self.lr_scheduler(optimizer)
        except ZeroDivisionError as error:  # torch's OneCycleLR with a warm-up of length 0
            raise ConfigError(
                "lr_scheduler: division by zero while building it; with OneCycleLR, "
                "pct_start x total_steps = 1 leaves a warm-up of zero length: raise pct_start "
                "or total_steps"
            ) from error
        total = getattr(scheduler, "total_steps", None)  # OneCycleLR fails when stepped past it
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        if total is not None and max_steps > total:
            raise ConfigError(
                f"lr_scheduler total_steps={total} is less than trainer.max_steps={max_steps}: "
                f"the schedule would end mid-run; set both to the same value"
            )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
