"""Prediction writers: what ``predict`` leaves on disk.

Each writer owns its ``output_dir``: a prediction run clears what the previous run wrote there
before writing, and records which checkpoint made the files, so the outputs of two models never
mix. A folder that holds files the writer did not write is never touched: the run stops with an
error naming it.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..datasets.mazes import decode, render_png, write_mazes_text
from ..errors import ConfigError
from ..modules.lm import TextPrediction
from ..modules.maze import MazePrediction

# The writer's mark on a folder it owns; it also says which model wrote the predictions.
MANIFEST = "predictions.json"


def prediction_name(trainer, dataloader_idx: int, prefix: str) -> str:
    """The DataModule's ``predict_names[dataloader_idx]``, else ``<prefix><dataloader_idx>``."""
    names = getattr(trainer.datamodule, "predict_names", None)
    return names[dataloader_idx] if names else f"{prefix}{dataloader_idx}"


class FolderWriter(BasePredictionWriter):
    """A batch-wise prediction writer that owns ``output_dir`` (see the module docstring)."""

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._claim(trainer)
        trainer.strategy.barrier("FolderWriter.on_predict_start")

    def _claim(self, trainer) -> None:
        folder = self.output_dir
        if folder.exists():
            if any(folder.iterdir()) and not (folder / MANIFEST).is_file():
                raise ConfigError(
                    f"prediction folder {folder} holds files that lit_metriplector did not write; "
                    f"choose another output_dir or empty it"
                )
            shutil.rmtree(folder)  # only what an earlier prediction run wrote
        folder.mkdir(parents=True)
        manifest = {
            "checkpoint": trainer.ckpt_path,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


class MazeWriter(FolderWriter):
    """Writes each predicted maze as a PNG (prediction against target: extra sites and missed
    sites coloured) and each batch as a text file with the predicted path marked ``*``.

    Args:
        output_dir: folder for the files (created if missing).
        scale: pixels per site in the PNGs.
    """

    def __init__(self, output_dir: str = "predictions", scale: int = 8) -> None:
        super().__init__(output_dir)
        self.scale = scale

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: MazePrediction,
        batch_indices,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        folder = self.output_dir / prediction_name(trainer, dataloader_idx, "set")
        folder.mkdir(parents=True, exist_ok=True)
        mazes, marks = [], []
        for i, (x, y, p) in enumerate(
            zip(
                prediction["input"].cpu().numpy(),
                prediction["target"].cpu().numpy(),
                prediction["probability"].float().cpu().numpy(),
                strict=True,
            )
        ):
            maze = decode(x)
            stem = folder / f"{batch_idx:04d}_{i:03d}"
            render_png(maze.open, maze.start, maze.goal, p, y, self.scale).save(f"{stem}.png")
            mazes.append(maze)
            marks.append(p > 0.5)
        write_mazes_text(folder / f"{batch_idx:04d}.txt", mazes, marks)


class TextWriter(FolderWriter):
    """Writes each prompt with its generated continuation to ``<output_dir>/<name>.txt`` (UTF-8;
    bytes that do not decode become U+FFFD). The name is the DataModule's
    ``predict_names[dataloader_idx]``, else ``prompt<dataloader_idx>``: one prompt per dataloader
    (batch size 1), as ``ByteTextDataModule`` yields them.

    Args:
        output_dir: folder for the files (created if missing).
    """

    def __init__(self, output_dir: str = "predictions/lm") -> None:
        super().__init__(output_dir)

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: TextPrediction,
        batch_indices,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx or len(prediction["prompt"]) != 1:
            raise ValueError("TextWriter writes one file per dataloader: one prompt in each")
        name = prediction_name(trainer, dataloader_idx, "prompt")
        data = bytes(torch.cat([prediction["prompt"][0], prediction["generated"][0]]).tolist())
        (self.output_dir / f"{name}.txt").write_text(
            data.decode("utf-8", errors="replace"), encoding="utf-8"
        )
