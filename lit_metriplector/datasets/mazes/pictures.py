"""Pictures of mazes, with a predicted path against the true one and a legend of the colours."""

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .generation import Site, as_mask

Colour = tuple[int, int, int]

WALL, OPEN = (40, 40, 40), (235, 235, 235)
PATH = (50, 100, 220)  # on the path (predicted and true when both are given)
EXTRA = (250, 150, 30)  # predicted, but not on the true path
MISSED = (170, 60, 200)  # on the true path, but not predicted
START, GOAL = (30, 180, 60), (220, 40, 40)

# The legend under a rendered picture: the colours it always has, then those of its marks.
SITES = (("walls", WALL), ("open", OPEN), ("start", START), ("goal", GOAL))
COMPARISON = (("predicted & correct", PATH), ("predicted extra", EXTRA), ("missed", MISSED))
LEGEND_TEXT = 12  # pixels: readable whatever the maze's scale


def to_rgb(
    open: np.ndarray,
    start: Site,
    goal: Site,
    prediction: np.ndarray | None = None,
    target: np.ndarray | None = None,
) -> np.ndarray:
    """uint8 (3, H, W) picture, one pixel per site (TensorBoard's add_image layout).

    prediction and target are bool masks or probabilities (threshold 0.5); given both, their
    disagreement is coloured EXTRA / MISSED, given one it is drawn as PATH.
    """
    rgb = np.where(np.asarray(open, dtype=bool)[..., None], OPEN, WALL).astype(np.uint8)
    predicted = None if prediction is None else as_mask(prediction)
    true = predicted if target is None else as_mask(target)
    predicted = true if predicted is None else predicted  # one alone agrees with itself
    if true is not None:
        rgb[predicted & true] = PATH
        rgb[predicted & ~true] = EXTRA
        rgb[true & ~predicted] = MISSED
    rgb[start] = START
    rgb[goal] = GOAL
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def render_png(
    open: np.ndarray,
    start: Site,
    goal: Site,
    prediction: np.ndarray | None = None,
    target: np.ndarray | None = None,
    scale: int = 8,
) -> Image.Image:
    """to_rgb as a PIL image with each site drawn as a scale x scale square, above a legend
    naming the colours it uses; .save() it as PNG."""
    rgb = to_rgb(open, start, goal, prediction, target).transpose(1, 2, 0)
    picture = Image.fromarray(rgb.repeat(scale, axis=0).repeat(scale, axis=1))
    marks = sum(m is not None for m in (prediction, target))  # one alone is drawn as PATH
    entries = SITES + ((), (("path", PATH),), COMPARISON)[marks]
    return with_legend(picture, entries)


def with_legend(picture: Image.Image, entries: Sequence[tuple[str, Colour]]) -> Image.Image:
    """``picture`` above a white strip with a swatch and a name per entry, in rows as wide as
    the picture (wider if one entry needs it, the picture then centred)."""
    font = ImageFont.load_default(LEGEND_TEXT)
    pad, swatch = LEGEND_TEXT // 2, LEGEND_TEXT
    widths = [swatch + pad // 2 + round(font.getlength(name)) for name, _ in entries]
    width = max(picture.width, max(widths) + 2 * pad)
    # Place the entries left to right, starting a new row where the next would overflow.
    places, x, y = [], pad, picture.height + pad
    for w in widths:
        if x > pad and x + w > width - pad:
            x, y = pad, y + swatch + pad
        places.append((x, y))
        x += w + 2 * pad
    canvas = Image.new("RGB", (width, y + swatch + pad), "white")
    canvas.paste(picture, ((width - picture.width) // 2, 0))
    draw = ImageDraw.Draw(canvas)
    for (name, colour), (x, y) in zip(entries, places, strict=True):
        # The outline keeps the light swatches (open) visible on the white strip.
        draw.rectangle((x, y, x + swatch - 1, y + swatch - 1), fill=colour, outline=WALL)
        draw.text((x + swatch + pad // 2, y + swatch // 2), name, fill=WALL, font=font, anchor="lm")
    return canvas
