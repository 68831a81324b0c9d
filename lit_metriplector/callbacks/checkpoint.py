"""Checkpoints that a debug run cannot clobber."""

from __future__ import annotations

from lightning.pytorch import callbacks as lightning_callbacks


class RunCheckpoint(lightning_callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments), except that a ``fast_dev_run`` never
    writes: Lightning 2.6.6 still saves ``last.ckpt`` at the end of one, which would replace the
    config's latest real fit with a two-batch model."""

    def on_train_end(self, trainer, pl_module) -> None:
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)
