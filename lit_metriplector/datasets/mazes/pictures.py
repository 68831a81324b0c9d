"""Pictures of mazes, with a predicted path against the true one."""

import numpy as np
from PIL import Image

from .generation import Site, as_mask

WALL, OPEN = (40, 40, 40), (235, 235, 235)
PATH = (50, 100, 220)  # on the path (predicted and true when both are given)
EXTRA = (250, 150, 30)  # predicted, but not on the true path
MISSED = (170, 60, 200)  # on the true path, but not predicted
START, GOAL = (30, 180, 60), (220, 40, 40)


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
    """to_rgb as a PIL image with each site drawn as a scale x scale square; .save() it as PNG."""
    rgb = to_rgb(open, start, goal, prediction, target).transpose(1, 2, 0)
    return Image.fromarray(rgb.repeat(scale, axis=0).repeat(scale, axis=1))
