"""Prediction writers: what ``predict`` leaves on disk.

A writer writes into its ``output_dir`` and keeps there a manifest, ``predictions.json``: the
checkpoint that made the predictions and every file and folder the run created, as paths relative
to ``output_dir``. Every file goes through ``FolderWriter.write_files``, which lists a new file in
the manifest (rewritten atomically) before writing it, so a run that dies midway still names all
it left behind. The rules (docs/reliability.md):

- A new run first deletes the files that the previous run's manifest lists, then the folders that
  run created once they are empty. The outputs of two models never mix, and whatever else is in
  the folder (the user's notes, analyses, subfolders) stays as it is.
- A writer never overwrites a file it has not written in this run: a name taken by another file
  stops the run with an error naming it.
- A folder without a manifest, or with one that lists no files (written before manifests had a
  list), is treated the same way: the run writes beside the files there, never over them.
- Under DDP each rank keeps its own manifest, ``predictions.rank<r>.json``; rank 0's says how
  many ranks there were.
- A folder or file that cannot be created, written or deleted stops the run with an
  ``OutputError`` naming it and the cause.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image

from ..datasets.files import atomic_write, output_errors
from ..datasets.mazes import decode, format_mazes_text, render_png
from ..errors import ConfigError, DataError
from ..modules.lm import TextPrediction
from ..modules.maze import MazePrediction

log = logging.getLogger(__name__)

# The writer's record of a folder: which model wrote the predictions, and which files.
MANIFEST = "predictions.json"


def manifest_name(rank: int) -> str:
    """The name of DDP rank ``rank``'s manifest."""
    return MANIFEST if rank == 0 else f"predictions.rank{rank}.json"


def prediction_name(trainer, dataloader_idx: int, prefix: str) -> str:
    """The DataModule's ``predict_names[dataloader_idx]``, else ``<prefix><dataloader_idx>``."""
    names = getattr(trainer.datamodule, "predict_names", None)
    return names[dataloader_idx] if names else f"{prefix}{dataloader_idx}"


def png_bytes(image: Image.Image) -> bytes:
    """``image`` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at ``path``, ``{}`` if there is none; refuses a file that is not one."""
    if not path.exists():
        return {}
    with output_errors(path, "read"):
        data = path.read_bytes()
    try:
        manifest = json.loads(data)
    except ValueError:  # not JSON, or not UTF-8
        manifest = None
    lists = ("files", "folders")
    if not (
        isinstance(manifest, dict)
        and all(isinstance(name, str) for key in lists for name in manifest.get(key, []))
        and isinstance(manifest.get("ranks", 1), int)
        and manifest.get("ranks", 1) >= 1
    ):
        raise DataError(
            f"{path} is not a prediction manifest; move it or choose another output_dir"
        )
    return manifest


def listed_path(folder: Path, name: str, manifest: Path) -> Path:
    """``folder / name``, refusing a name that leads out of ``folder`` (an edited manifest, a
    subfolder replaced by a link): a run deletes only inside its own folder."""
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise DataError(f"{manifest} lists {name}, which is outside {folder}; delete that entry")
    return path


def remove_previous(folder: Path) -> list[str]:
    """Delete what the previous prediction run wrote in ``folder``: the files and manifests its
    manifests list, then its folders that are left empty. Returns the folders it created that
    stay because they hold other files, for the next run to list again."""
    main = read_manifest(folder / MANIFEST)
    paths = [folder / manifest_name(rank) for rank in range(main.get("ranks", 1))]
    manifests = {path: read_manifest(path) for path in paths}
    files = [listed_path(folder, f, p) for p, m in manifests.items() for f in m.get("files", [])]
    folders = {
        listed_path(folder, f, p) for p, m in manifests.items() for f in m.get("folders", [])
    }
    for path in files + paths:
        with output_errors(path, "delete"):
            path.unlink(missing_ok=True)
    kept = []
    for path in sorted(folders, key=lambda p: len(p.parts), reverse=True):  # children first
        with output_errors(path, "delete"):
            if path.is_dir() and any(path.iterdir()):
                kept.append(path.relative_to(folder).as_posix())
            elif path.is_dir():
                path.rmdir()
    return kept


class FolderWriter(BasePredictionWriter):
    """A batch-wise prediction writer that writes ``output_dir`` only through ``write_files``
    (the rules are in the module docstring)."""

    def __init__(self, output_dir: str) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.manifest_path = self.output_dir / MANIFEST
        self._manifest: dict[str, Any] = {}
        self._written: set[str] = set()

    def on_predict_start(self, trainer, pl_module) -> None:
        kept: list[str] = []
        if trainer.is_global_zero:
            with output_errors(self.output_dir, "create"):
                self.output_dir.mkdir(parents=True, exist_ok=True)
            kept = remove_previous(self.output_dir)
        trainer.strategy.barrier("FolderWriter.on_predict_start")
        self.manifest_path = self.output_dir / manifest_name(trainer.global_rank)
        self._check_free(self.manifest_path)
        self._manifest = {
            "checkpoint": trainer.ckpt_path,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "ranks": trainer.world_size,
            "folders": kept,
            "files": [],
        }
        self._written = set()
        self._save_manifest()

    def on_predict_end(self, trainer, pl_module) -> None:
        count = len(self._written)
        log.info(
            "predict: wrote %s file%s to %s (manifest: %s)",
            f"{count:,}",
            "" if count == 1 else "s",
            self.output_dir,
            self.manifest_path,
        )

    def write_files(self, files: Mapping[str, bytes | str], append: bool = False) -> None:
        """Write each of ``files`` (a path relative to ``output_dir``: its content, text as
        UTF-8) whole and atomically, or if ``append`` after what this run wrote there before.

        The one way the writers write: a file this run has not written yet is refused if its
        name is taken, and is listed in the manifest before it is written.
        """
        new = [name for name in files if name not in self._written]
        for name in new:
            self._check_free(self.output_dir / name)
        if new:
            self._record(new)
        for name, content in files.items():
            path = self.output_dir / name
            data = content.encode("utf-8") if isinstance(content, str) else content
            # Appends (a CSV growing batch by batch) only extend a file this run created.
            with output_errors(path), open(path, "ab") if append else atomic_write(path) as f:
                f.write(data)

    def _check_free(self, path: Path) -> None:
        """Refuse to write over a file that no prediction run wrote: it may be the user's."""
        if path.exists() or path.is_symlink():
            raise ConfigError(
                f"{path} was not written by a prediction run (no manifest lists it); "
                f"move it or choose another output_dir"
            )

    def _record(self, names: list[str]) -> None:
        """List ``names`` and the folders they need in the manifest, then create the folders."""
        folders: list[str] = []
        for name in names:
            for parent in reversed(PurePosixPath(name).parents[:-1]):  # a, a/b for a/b/c.png
                if not (self.output_dir / parent).is_dir() and str(parent) not in folders:
                    folders.append(str(parent))
        self._manifest["folders"] += folders
        self._manifest["files"] += names
        self._written.update(names)
        self._save_manifest()
        for folder in folders:
            with output_errors(self.output_dir / folder, "create"):
                (self.output_dir / folder).mkdir(exist_ok=True)

    def _save_manifest(self) -> None:
        with output_errors(self.manifest_path), atomic_write(self.manifest_path, "w") as f:
            f.write(json.dumps(self._manifest, indent=1) + "\n")


class MazeWriter(FolderWriter):
    """Writes each predicted maze as a PNG (prediction against target: extra sites and missed
    sites coloured, a legend under the maze) and each batch as a text file with the predicted
    path marked ``*``.

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
        folder = prediction_name(trainer, dataloader_idx, "set")
        files: dict[str, bytes | str] = {}
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
            picture = render_png(maze.open, maze.start, maze.goal, p, y, self.scale)
            files[f"{folder}/{batch_idx:04d}_{i:03d}.png"] = png_bytes(picture)
            mazes.append(maze)
            marks.append(p > 0.5)
        files[f"{folder}/{batch_idx:04d}.txt"] = format_mazes_text(mazes, marks)
        self.write_files(files)


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
        self.write_files({f"{name}.txt": data.decode("utf-8", errors="replace")})
