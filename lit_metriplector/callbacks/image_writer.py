"""``ImageWriter``: what ``predict`` of an image classifier leaves on disk."""

from __future__ import annotations

import csv
import io
from typing import Any

from ..modules.classification import ImagePrediction, grid, label_images
from .writers import FolderWriter, png_bytes, prediction_name


class ImageWriter(FolderWriter):
    """Writes each predicted batch as a grid of its images labelled with the predicted class
    (and probability) against the true one, ``<output_dir>/<set>/batch_<i>.png``, and every
    prediction as a row of ``<output_dir>/<set>/predictions.csv``: index, true class, predicted
    class, its probability, the top-5 classes. Class names come from the DataModule's
    ``classes``. The writer owns ``output_dir`` (see ``callbacks.writers``).

    Args:
        output_dir: folder for the files.
        columns: images per row of the grids.
        scale: enlargement of each image in the grids.
        top_k: classes listed per row of the CSV.
    """

    FIELDS = ("index", "target", "target_name", "prediction", "prediction_name", "probability")

    def __init__(
        self,
        output_dir: str = "predictions/images",
        columns: int = 8,
        scale: int = 4,
        top_k: int = 5,
    ) -> None:
        super().__init__(output_dir)
        self.columns, self.scale, self.top_k = columns, scale, top_k
        self._rows: dict[str, int] = {}

    def on_predict_start(self, trainer, pl_module) -> None:
        super().on_predict_start(trainer, pl_module)
        self._rows = {}

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: ImagePrediction,
        batch_indices,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        folder = prediction_name(trainer, dataloader_idx, "set")
        classes = tuple(getattr(trainer.datamodule, "classes", ()) or ())
        probability = prediction["probability"].float().cpu()
        predicted = prediction["prediction"].cpu().tolist()
        target = prediction["target"].cpu().tolist()
        confidence = probability.gather(1, prediction["prediction"].cpu()[:, None])[:, 0].tolist()
        pictures = label_images(
            prediction["image"], predicted, target, confidence, classes, self.scale
        )
        suffix = "" if trainer.world_size == 1 else f"_rank{trainer.global_rank}"
        picture = grid(pictures, self.columns)
        self.write_files({f"{folder}/batch_{batch_idx:04d}{suffix}.png": png_bytes(picture)})
        k = min(self.top_k, probability.shape[1])
        top = probability.topk(k, dim=1).indices.tolist()
        name = f"{folder}/predictions{suffix}.csv"
        first = name not in self._rows
        start = self._rows.get(name, 0)
        rows = io.StringIO(newline="")
        writer = csv.writer(rows)
        if first:
            writer.writerow([*self.FIELDS, f"top{k}"])
        for i, (t, p, c) in enumerate(zip(target, predicted, confidence, strict=True)):
            index = batch_indices[i] if batch_indices is not None else start + i
            names = " ".join(_name(classes, j) for j in top[i])
            writer.writerow([index, t, _name(classes, t), p, _name(classes, p), f"{c:.4f}", names])
        self.write_files({name: rows.getvalue()}, append=True)
        self._rows[name] = start + len(target)


def _name(classes: tuple[str, ...], index: int) -> str:
    return classes[index] if index < len(classes) else str(index)
