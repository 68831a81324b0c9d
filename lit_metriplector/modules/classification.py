"""Image classification: cross-entropy with label smoothing (and the soft targets of mixup and
cutmix), top-1 and top-5 accuracy per stage, per-class accuracy on the test sets, and pictures
of the predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from ..errors import ConfigError
from .base import MetriplectorTask


def hard_labels(target: Tensor) -> Tensor:
    """Class indices of hard ``(B,)`` or soft ``(B, classes)`` targets (the likeliest class)."""
    return target.argmax(-1) if target.is_floating_point() else target


class Accuracy(MulticlassAccuracy):
    """Top-k accuracy (micro average) that also takes soft targets (mixup, cutmix), scoring
    them against their likeliest class."""

    def update(self, preds: Tensor, target: Tensor) -> None:
        super().update(preds, hard_labels(target))


class PerClassAccuracy(Metric):
    """Top-1 accuracy per class. ``compute`` gives their mean over the classes seen (the
    balanced accuracy, a scalar that can be logged); ``per_class`` the vector (NaN for unseen
    classes)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        target = hard_labels(target)
        hit = preds.argmax(-1) == target
        self.correct += torch.bincount(target[hit], minlength=self.num_classes)
        self.total += torch.bincount(target, minlength=self.num_classes)

    def per_class(self) -> Tensor:
        total = self.total.float()
        return torch.where(total > 0, self.correct / total.clamp_min(1), float("nan"))

    def compute(self) -> Tensor:
        accuracy = self.per_class()
        seen = ~accuracy.isnan()
        return accuracy[seen].mean() if seen.any() else accuracy.new_tensor(0.0)


class ImagePrediction(TypedDict):
    """What ``ClassificationTask.predict_step`` returns, for ``ImageWriter``: the pictures
    ``(B, C, H, W)`` uint8, the true classes ``(B,)``, the predicted classes ``(B,)`` and the
    class probabilities ``(B, classes)``."""

    image: Tensor
    target: Tensor
    prediction: Tensor
    probability: Tensor


def label_images(
    images: Tensor,
    predicted: Sequence[int],
    true: Sequence[int] | None,
    probability: Sequence[float],
    classes: Sequence[str],
    scale: int = 4,
) -> list[Image.Image]:
    """Each image ``(C, H, W)`` uint8, enlarged ``scale`` times, over a caption with the
    predicted class and its probability and the true class: green when right, red when
    wrong."""
    font = ImageFont.load_default()
    out = []
    for n, image in enumerate(images.cpu()):
        pixels = image.expand(3, *image.shape[1:]).permute(1, 2, 0).numpy()
        picture = Image.fromarray(np.ascontiguousarray(pixels)).resize(
            (image.shape[2] * scale, image.shape[1] * scale), Image.NEAREST
        )
        width = max(picture.width, 112)
        canvas = Image.new("RGB", (width, picture.height + 26), "white")
        canvas.paste(picture, ((width - picture.width) // 2, 0))
        draw = ImageDraw.Draw(canvas)
        p = predicted[n]
        right = true is not None and p == true[n]
        colour = (0, 128, 0) if right or true is None else (200, 0, 0)
        draw.text((2, picture.height + 1), f"{name(classes, p)} {probability[n]:.2f}", colour, font)
        if true is not None:
            draw.text((2, picture.height + 13), f"true: {name(classes, true[n])}", "black", font)
        out.append(canvas)
    return out


def name(classes: Sequence[str], index: int) -> str:
    return classes[index] if index < len(classes) else str(index)


def grid(pictures: list[Image.Image], columns: int = 8) -> Image.Image:
    """Pictures of equal size in rows of ``columns``."""
    w, h = pictures[0].size
    rows = -(-len(pictures) // columns)
    sheet = Image.new("RGB", (min(columns, len(pictures)) * w, rows * h), "white")
    for i, picture in enumerate(pictures):
        sheet.paste(picture, ((i % columns) * w, (i // columns) * h))
    return sheet


class ClassificationTask(MetriplectorTask):
    """Image classification. Batches are ``{"input": float (B, C, H, W), "target": long (B,) or
    soft (B, classes)}`` (after the DataModule's ``on_after_batch_transfer``), plus ``"image"``
    (the uint8 pictures) for the pictures of ``render_prediction``.

    Metrics per stage: ``top1``, ``top5`` (``top_k``) and ``balanced`` (mean per-class
    accuracy); on each test set also every class's accuracy, logged as
    ``test/<set>/class/<class name>`` (a ``/`` in a name becomes ``-``) and kept in
    ``per_class_accuracy``.

    Arguments: those of ``MetriplectorTask`` (``network``, required: an ``ImageMetriplector`` or
    any ``TaskNetwork``; ``optimizer``, ``lr_scheduler``, ``compile``, ``test_names``), and:

    Args:
        num_classes: classes of the data (linked from the DataModule by the CLI; checked
            against it at setup).
        label_smoothing: of the cross-entropy.
        top_k: the second accuracy's k.
    """

    def __init__(
        self,
        *args: Any,
        num_classes: int = 100,
        label_smoothing: float = 0.0,
        top_k: int = 5,
        **kwargs: Any,
    ) -> None:
        if num_classes < 2 or not 0 <= label_smoothing < 1 or top_k < 1:
            raise ConfigError(
                f"need num_classes >= 2, 0 <= label_smoothing < 1 and top_k >= 1, got "
                f"{num_classes}, {label_smoothing}, {top_k}"
            )
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.top_k = min(top_k, num_classes)
        super().__init__(*args, **kwargs)
        self.per_class_accuracy: dict[str, dict[str, float]] = {}

    def build_metrics(self) -> MetricCollection:
        k = self.num_classes
        return MetricCollection(
            {
                "top1": Accuracy(k, top_k=1),
                f"top{self.top_k}": Accuracy(k, top_k=self.top_k),
                "balanced": PerClassAccuracy(k),
            },
            compute_groups=False,  # grouped states would be shared by top-1 and top-k
        )

    def setup(self, stage: str) -> None:
        classes = getattr(self.trainer.datamodule, "num_classes", None) if self._trainer else None
        if classes is not None and classes != self.num_classes:
            raise ConfigError(
                f"the data has {classes} classes but the task was configured with num_classes="
                f"{self.num_classes}: build the task (and its network) with num_classes={classes}"
            )

    def split_batch(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return batch["input"], batch["target"]

    def compute_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.float(), target, label_smoothing=self.label_smoothing)

    def class_names(self) -> tuple[str, ...]:
        classes = getattr(self.trainer.datamodule, "classes", ()) if self._trainer else ()
        return tuple(classes) or tuple(str(i) for i in range(self.num_classes))

    def on_test_epoch_end(self) -> None:
        classes = self.class_names()
        for test_name, metrics in zip(self.test_names or ["test"], self.test_metrics, strict=True):
            accuracy = metrics["balanced"].per_class().tolist()
            self.per_class_accuracy[test_name] = dict(zip(classes, accuracy, strict=True))
            for cls, value in zip(classes, accuracy, strict=True):
                if value == value:  # not NaN: the class occurs in this test set
                    key = f"{metrics.prefix}class/{cls.replace('/', '-')}"
                    self.log(key, value, add_dataloader_idx=False)

    def predict_step(
        self, batch: dict[str, Tensor], batch_idx: int, dataloader_idx: int = 0
    ) -> ImagePrediction:
        probability = self(batch["input"])[0].float().softmax(-1)
        return ImagePrediction(
            image=batch.get("image", batch["input"]),
            target=hard_labels(batch["target"]),
            prediction=probability.argmax(-1),
            probability=probability,
        )

    def render_prediction(self, batch: dict[str, Tensor], output: Tensor) -> Tensor:
        """The images with the predicted class (and its probability) against the true one,
        green when right and red when wrong: ``(B, 3, H', W')`` uint8, for the image logger."""
        probability = output.detach().float().softmax(-1).cpu()
        predicted = probability.argmax(-1)
        images = batch.get("image")
        if images is None:  # no uint8 pictures: stretch the inputs to [0, 255]
            x = batch["input"].float()
            low = x.amin((1, 2, 3), keepdim=True)
            high = x.amax((1, 2, 3), keepdim=True)
            images = ((x - low) / (high - low).clamp_min(1e-6) * 255).to(torch.uint8)
        pictures = label_images(
            images,
            predicted.tolist(),
            hard_labels(batch["target"]).tolist(),
            probability.gather(1, predicted[:, None])[:, 0].tolist(),
            self.class_names(),
        )
        return torch.stack(
            [torch.from_numpy(np.array(p)).permute(2, 0, 1).contiguous() for p in pictures]
        )
