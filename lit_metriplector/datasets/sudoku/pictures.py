"""Sudoku boards as text and as pictures, with a model's predictions marked right or wrong."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

GIVEN = (0, 0, 0)  # black
RIGHT = (0, 90, 200)  # blue: a prediction that matches the solution, or one not judged
WRONG = (210, 0, 0)  # red
WRONG_BACKGROUND = (255, 215, 215)
BACKGROUND = (255, 255, 255)
THIN_LINE = (160, 160, 160)
THICK_LINE = (0, 0, 0)

Board = np.ndarray | torch.Tensor


def _digits(board: Board | None) -> np.ndarray | None:
    """(81,) int64 digits from a numpy array or a tensor on any device."""
    if board is None:
        return None
    if isinstance(board, torch.Tensor):
        board = board.detach().cpu().numpy()
    return np.asarray(board, dtype=np.int64).reshape(81)


def _cells(
    puzzle: Board, prediction: Board | None, solution: Board | None
) -> list[tuple[int, str]]:
    """Per cell the digit to show (0 = none) and its kind: given, blank, right or wrong."""
    p, q, s = _digits(puzzle), _digits(prediction), _digits(solution)
    out = []
    for i in range(81):
        if p[i]:
            out.append((int(p[i]), "given"))
        elif q is None:
            out.append((0, "blank"))
        else:
            wrong = s is not None and q[i] != s[i]
            out.append((int(q[i]), "wrong" if wrong else "right"))
    return out


def format_board(
    puzzle: Board, prediction: Board | None = None, solution: Board | None = None
) -> str:
    """The board as 11 lines of text: 9 rows with ``|`` between boxes and 2 ``-`` separators.

    Givens are shown as `` 5 ``, blanks as `` . ``, the prediction on blank cells as ``(5)``,
    or ``!5!`` when ``solution`` is given and the prediction differs from it (``0`` = no digit).

    Args:
        puzzle: (81,) digits, 0 = blank.
        prediction: (81,) predicted digits; only the blank cells' ones are shown.
        solution: (81,) digits, to mark the wrong predictions.
    """
    style = {"given": " {} ", "blank": " . ", "right": "({})", "wrong": "!{}!"}
    cells = [style[kind].format(d or ".") for d, kind in _cells(puzzle, prediction, solution)]
    lines = []
    for r in range(9):
        if r in (3, 6):
            lines.append("+".join(["-" * 9] * 3))
        row = cells[9 * r : 9 * r + 9]
        lines.append("|".join("".join(row[b : b + 3]) for b in (0, 3, 6)))
    return "\n".join(lines)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def render_board(
    puzzle: Board, prediction: Board | None = None, solution: Board | None = None, scale: int = 2
) -> np.ndarray:
    """A picture of the board: givens black, predictions blue, wrong predictions red on pink.

    Grid lines are thin between cells and thick between boxes. Predictions on given cells are
    not shown; a blank cell predicted ``0`` (no digit) that ``solution`` fills is wrong.

    Args:
        puzzle: (81,) digits, 0 = blank.
        prediction: (81,) predicted digits.
        solution: (81,) digits, to judge the predictions.
        scale: size factor; a cell is ``16 * scale`` pixels wide.

    Returns:
        (H, W, 3) uint8 with ``H = W = 9 * 16 * scale + 3 * max(1, scale // 2)``.
    """
    cell = 16 * scale
    thin = max(1, scale // 2)
    thick = 3 * thin
    size = 9 * cell + thick
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font(int(cell * 0.7))
    colours = {"given": GIVEN, "right": RIGHT, "wrong": WRONG}
    offset = thick // 2  # keeps the outer thick lines inside the picture
    for i, (digit, kind) in enumerate(_cells(puzzle, prediction, solution)):
        x, y = offset + (i % 9) * cell, offset + (i // 9) * cell
        if kind == "wrong":
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=WRONG_BACKGROUND)
        if digit:
            left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
            position = (x + (cell - right - left) / 2, y + (cell - bottom - top) / 2)
            draw.text(position, str(digit), fill=colours[kind], font=font)
    for k in sorted(range(10), key=lambda k: k % 3 == 0):  # thick over thin where they cross
        width, colour = (thick, THICK_LINE) if k % 3 == 0 else (thin, THIN_LINE)
        start = offset + k * cell - width // 2
        draw.rectangle([start, 0, start + width - 1, size - 1], fill=colour)
        draw.rectangle([0, start, size - 1, start + width - 1], fill=colour)
    return np.array(image, dtype=np.uint8)
