"""Shared by the resume tests: short fits that return the batches they trained on or the loss of
every step."""

from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


def fit_recording(
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    tmp_path: Path,
    steps: int,
    save_at: int | None = None,
    via: Literal["train_batch", "validation"] = "train_batch",
    ckpt_path: str | None = None,
) -> list[torch.Tensor]:
    """Fit ``model`` (which appends each training batch to ``model.batches``) for ``steps`` steps;
    with ``save_at``, save ``<tmp_path>/ckpt/step=<save_at>.ckpt`` at the end of that training
    batch or (``via="validation"``) after validating there."""
    on_batch = save_at if via == "train_batch" else None
    checkpoint = ModelCheckpoint(tmp_path / "ckpt", "{step}", every_n_train_steps=on_batch)
    trainer = L.Trainer(
        max_steps=steps,
        val_check_interval=save_at if via == "validation" else None,
        logger=False,
        callbacks=[checkpoint] if save_at else [],
        enable_checkpointing=bool(save_at),
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule, ckpt_path=ckpt_path)
    return model.batches


class StepLosses(Callback):
    """Records the training loss of every optimizer step, keyed by the global step it made."""

    def __init__(self) -> None:
        self.losses: dict[int, torch.Tensor] = {}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self.losses[trainer.global_step] = outputs["loss"].detach().clone()


def fit_losses(
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    root: Path,
    steps: int,
    ckpt_path: Path | None = None,
    **trainer_kwargs: Any,
) -> dict[int, torch.Tensor]:
    """Fit until global step ``steps``, checkpointing as the shipped configs do (one
    ``ModelCheckpoint(save_last=True)``, into ``<root>/ckpt``), optionally resuming from
    ``ckpt_path``; returns the loss of every step this run made."""
    losses = StepLosses()
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        callbacks=[ModelCheckpoint(root / "ckpt", save_last=True), losses],
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        **trainer_kwargs,
    )
    trainer.fit(model, datamodule, ckpt_path=ckpt_path)
    return losses.losses
