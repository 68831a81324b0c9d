"""``SudokuWriter``: predicted Sudoku boards as text and pictures."""

from __future__ import annotations

from typing import Any

from PIL import Image

from ..datasets.sudoku import format_board, is_valid_solution, render_board
from ..modules.sudoku import SudokuPrediction
from .writers import FolderWriter, png_bytes, prediction_name


class SudokuWriter(FolderWriter):
    """Writes, per predict set ``<output_dir>/<name>/``, one PNG per board (givens black,
    predicted digits blue, wrong ones red) and one text file per batch: for each board its
    81-character puzzle and prediction, whether the prediction is exact and valid, and the
    board drawn as text (``format_board``: predictions in ``()``, wrong ones in ``!!``). Owns
    ``output_dir`` like every ``FolderWriter``: a new prediction run replaces the files the last
    one wrote, and nothing else (see ``callbacks.writers``).

    Args:
        output_dir: folder for the files (created if missing).
        scale: size factor of the pictures (a cell is ``16 * scale`` pixels).
    """

    def __init__(self, output_dir: str = "predictions/sudoku", scale: int = 2) -> None:
        super().__init__(output_dir)
        self.scale = scale

    def write_on_batch_end(
        self,
        trainer,
        pl_module,
        prediction: SudokuPrediction,
        batch_indices,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        folder = prediction_name(trainer, dataloader_idx, "set")
        files: dict[str, bytes | str] = {}
        puzzles = prediction["puzzle"].cpu()
        solutions = prediction["solution"].cpu()
        boards = prediction["prediction"].cpu()
        valid = is_valid_solution(boards, puzzles)
        blocks = []
        for i, (p, s, q) in enumerate(zip(puzzles, solutions, boards, strict=True)):
            stem = f"{batch_idx:04d}_{i:03d}"
            image = render_board(p, q, s, scale=self.scale)
            files[f"{folder}/{stem}.png"] = png_bytes(Image.fromarray(image))
            exact = bool((q == s).all())
            blocks.append(
                "\n".join(
                    [
                        f"# {stem}: exact={exact} valid={bool(valid[i])}",
                        "puzzle     " + "".join(str(int(d)) for d in p),
                        "prediction " + "".join(str(int(d)) for d in q),
                        format_board(p, q, s),
                    ]
                )
            )
        files[f"{folder}/{batch_idx:04d}.txt"] = "\n\n".join(blocks) + "\n"
        self.write_files(files)
