"""Shared by the DataModules' resume tests: a short fit that returns the batches it trained on."""

from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


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
