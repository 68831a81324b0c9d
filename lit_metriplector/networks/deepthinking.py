"""DeepThinking baseline for mazes: a weight-tied recurrent convolutional network.

DT-net with recall ("dt_net_recall_2d") from Schwarzschild et al. 2021, "Can You Learn an
Algorithm? Generalizing from Easy to Hard Problems with Recurrent Networks", and Bansal et al.
2022, "End-to-end Algorithm Synthesis with Recurrent Networks: Logical Extrapolation Without
Overthinking". A projection lifts the maze to ``width`` channels; one recurrent block (the raw
maze concatenated to the hidden state, a 3x3 convolution back to ``width``, then residual blocks)
is applied over and over with the same weights; a convolutional head reads one logit per site.
Every operation is a local convolution, so the net runs on any maze size, and it extrapolates by
thinking longer: at eval time the number of iterations grows with the maze.

A drop-in alternative to ``MazeNetwork``: ``forward(x, diagnostics=False)`` returns the logits
and an empty list (there is no physics to report).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core import DynamicsReport


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """Same-padded 3x3 convolution without bias, as in the DeepThinking code."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Residual block without normalisation: ``relu(x + conv(relu(conv(x))))``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(width, width)
        self.conv2 = conv3x3(width, width)

    def forward(self, h: Tensor) -> Tensor:
        return torch.relu(h + self.conv2(torch.relu(self.conv1(h))))


class RecurrentBlock(nn.Module):
    """One thinking step: recall the raw input, convolve back to ``width``, residual blocks."""

    def __init__(self, width: int, in_channels: int, blocks: int) -> None:
        super().__init__()
        self.recall = conv3x3(width + in_channels, width)
        self.blocks = nn.Sequential(*(BasicBlock(width) for _ in range(blocks)))

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        return self.blocks(self.recall(torch.cat([h, x], 1)))


class DeepThinkingNetwork(nn.Module):
    """DT-net with recall: per-site path logits for mazes ``(B, 3, H, W)`` (open / start / goal).

    Training (``self.training``) uses the progressive loss of Bansal et al.: their loss is
    ``(1 - alpha) * L(full) + alpha * L(progressive)``, where ``full`` is the output after
    ``iterations`` steps and ``progressive`` starts from the hidden state after
    ``n ~ U{0..iterations-1}`` steps computed without gradient (detached) and runs
    ``k ~ U{1..iterations-n}`` more steps with gradient. The task computes a plain BCE on the
    one tensor the network returns, so each training forward returns the progressive output
    with probability ``alpha`` and the full-depth one otherwise: the expected loss, and so the
    expected gradient, is exactly the paper's combination; only its variance is higher. (It
    is also cheaper: one branch per step instead of both.) All draws use torch's global RNG,
    so ``seed_everything`` makes runs reproducible. Training metrics are measured on whichever
    output was drawn.

    At eval time the net runs ``test_iterations`` steps or, if that is ``None``, scales the
    training depth with the maze: ``round(iterations * max(H, W) / train_size)`` steps, at least
    ``iterations`` and at most ``max_iterations`` (20 steps on 15x15 become 52 on 39x39 and 132
    on 99x99).

    Args:
        width: channels of the hidden state.
        blocks: residual blocks (two 3x3 convolutions each) in the recurrent block.
        iterations: applications of the recurrent block in training.
        test_iterations: applications at eval time (``None``: scale with the maze size).
        train_size: side of the training mazes in sites (15 for 7 cells), the reference for
            scaling the eval iterations.
        max_iterations: cap on the scaled eval iterations.
        alpha: weight of the progressive loss, i.e. the probability that a training forward
            returns the progressive output (0: always the full-depth output).
    """

    def __init__(
        self,
        width: int = 32,
        blocks: int = 2,
        iterations: int = 20,
        test_iterations: int | None = None,
        train_size: int = 15,
        max_iterations: int = 400,
        alpha: float = 0.5,
    ) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be at least 1, got {width}")
        if blocks < 0:
            raise ValueError(f"blocks must be non-negative, got {blocks}")
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        if test_iterations is not None and test_iterations < 1:
            raise ValueError(f"test_iterations must be at least 1 or None, got {test_iterations}")
        if train_size < 1:
            raise ValueError(f"train_size must be at least 1, got {train_size}")
        if max_iterations < iterations:
            raise ValueError(
                f"max_iterations ({max_iterations}) must be at least iterations ({iterations})"
            )
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.iterations = iterations
        self.test_iterations = test_iterations
        self.train_size = train_size
        self.max_iterations = max_iterations
        self.alpha = alpha
        in_channels = 3
        self.projection = nn.Sequential(conv3x3(in_channels, width), nn.ReLU())
        self.recur = RecurrentBlock(width, in_channels, blocks)
        self.head = nn.Sequential(
            conv3x3(width, 32), nn.ReLU(), conv3x3(32, 8), nn.ReLU(), conv3x3(8, 1)
        )

    def eval_iterations(self, height: int, width: int) -> int:
        """Iterations at eval time for a ``height x width`` maze."""
        if self.test_iterations is not None:
            return self.test_iterations
        scaled = round(self.iterations * max(height, width) / self.train_size)
        return min(max(scaled, self.iterations), self.max_iterations)

    def think(self, x: Tensor, iterations: int, hidden: Tensor | None = None) -> Tensor:
        """The hidden state after ``iterations`` recurrent steps, from ``hidden`` if given and
        from the projection of ``x`` otherwise."""
        h = self.projection(x) if hidden is None else hidden
        for _ in range(iterations):
            h = self.recur(h, x)
        return h

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Path logits ``(B, H, W)`` and an empty list of reports (``diagnostics`` is ignored)."""
        if not self.training:
            h = self.think(x, self.eval_iterations(*x.shape[-2:]))
            return self.head(h).squeeze(1), []
        # Three draws on every training forward, whichever branch is taken, so the RNG stream
        # does not depend on the outcome.
        progressive = torch.rand(()).item() < self.alpha
        n = int(torch.randint(0, self.iterations, ()))
        k = int(torch.randint(1, self.iterations - n + 1, ()))
        if progressive:
            hidden = None  # n = 0: from the projection, with gradient (as in the paper's code)
            if n > 0:
                with torch.no_grad():
                    hidden = self.think(x, n).detach()
            h = self.think(x, k, hidden)
        else:
            h = self.think(x, self.iterations)
        return self.head(h).squeeze(1), []
