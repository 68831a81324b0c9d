"""Recurrent Relational Network baseline for Sudoku (Palm, Paquet and Winther, NeurIPS 2018).

Message passing over the true constraint graph (each cell's 20 peers): this baseline is given
the structure that ``SudokuNetwork`` has to learn. Per cell ``j``::

    x_j   = MLP(embed(digit_j), embed(row_j), embed(column_j))            input, recalled each step
    m_ij  = f(h_i, h_j)                                                    MLP message on each edge
    m_j   = sum over the peers i of j of m_ij
    h_j, s_j = LSTM(g(h_j, x_j, m_j), (h_j, s_j))                          node update
    o_j   = r(h_j)                                                         9 logits, every step

with a loss at every step. The paper uses 96 units, 16-dimensional embeddings and 32 steps;
here ``width`` is chosen to match the parameters of the Metriplector network, and the number of
steps follows the same options as ``SudokuNetwork`` (``iterations``, ``train_iterations``,
``test_iterations``). The first layer of ``f`` is linear in ``(h_i, h_j)``, so it is applied
per cell and gathered onto the edges (the same function, fewer operations).

``forward(x, diagnostics=False)`` returns the logits of every step ``(B, T, 81, 9)`` and an
empty list (no physics to report); ``iterate(x, iterations)`` runs a given number of steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core import DynamicsReport
from ..datasets.sudoku.structure import COLUMN, ROW, peers

CELLS = 81
DIGITS = 9


class RecurrentRelationalNetwork(nn.Module):
    """Per-step digit logits for Sudoku puzzles ``(B, 81)`` (digits, 0 = blank).

    Args:
        width: hidden units of every MLP and of the LSTM (the paper: 96).
        embedding: size of the digit, row and column embeddings (the paper: 16).
        iterations: message-passing steps at eval time (and the nominal training depth).
        train_iterations: inclusive range of the number of steps drawn per training batch;
            ``None`` trains at ``iterations``.
        test_iterations: steps at eval time, overriding ``iterations``.
    """

    def __init__(
        self,
        width: int = 52,
        embedding: int = 16,
        iterations: int = 8,
        train_iterations: tuple[int, int] | None = (4, 12),
        test_iterations: int | None = None,
    ) -> None:
        super().__init__()
        if train_iterations is not None and not 1 <= train_iterations[0] <= train_iterations[1]:
            raise ValueError(f"train_iterations={train_iterations}: need 1 <= low <= high")
        self.iterations, self.test_iterations = iterations, test_iterations
        self.train_iterations = None if train_iterations is None else tuple(train_iterations)
        self.digit = nn.Embedding(DIGITS + 1, embedding)
        self.row = nn.Embedding(9, embedding)
        self.column = nn.Embedding(9, embedding)
        self.register_buffer("rows", torch.from_numpy(ROW).long(), persistent=False)
        self.register_buffer("columns", torch.from_numpy(COLUMN).long(), persistent=False)
        # senders[j, :] are the 20 peers of cell j (every cell has exactly 20)
        senders = peers().nonzero()[:, 1].view(CELLS, -1)
        self.register_buffer("senders", senders, persistent=False)
        self.input = nn.Sequential(
            nn.Linear(3 * embedding, width), nn.ReLU(), nn.Linear(width, width)
        )
        self.message_sender = nn.Linear(width, width)
        self.message_receiver = nn.Linear(width, width, bias=False)
        self.message = nn.Sequential(
            nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)
        )
        self.node = nn.Sequential(nn.Linear(3 * width, width), nn.ReLU(), nn.Linear(width, width))
        self.lstm = nn.LSTMCell(width, width)
        self.out = nn.Linear(width, DIGITS)

    def num_iterations(self) -> int:
        if self.training and self.train_iterations is not None:
            lo, hi = self.train_iterations
            return int(torch.randint(lo, hi + 1, ()))
        return self.test_iterations or self.iterations

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, T, 81, 9)`` of every step for puzzles ``x`` ``(B, 81)`` (digits,
        0 = blank), and an empty list (no physics to report)."""
        return self.iterate(x, None, diagnostics)

    def iterate(
        self, puzzle: Tensor, iterations: int | None = None, diagnostics: bool = False
    ) -> tuple[Tensor, list[DynamicsReport]]:
        """``forward`` with the number of steps of this call (``None``: drawn in training,
        ``test_iterations or iterations`` at eval)."""
        puzzle = puzzle.long()
        batch, width = puzzle.shape[0], self.out.in_features
        n = iterations or self.num_iterations()
        x = self.input(
            torch.cat(
                [
                    self.digit(puzzle),
                    self.row(self.rows).expand(batch, -1, -1),
                    self.column(self.columns).expand(batch, -1, -1),
                ],
                -1,
            )
        )  # (B, 81, W)
        h, c = x.reshape(-1, width), torch.zeros_like(x).reshape(-1, width)
        logits = []
        for _ in range(n):
            hv = h.view(batch, CELLS, width)
            sent = self.message_sender(hv)[:, self.senders]  # (B, 81, 20, W): from each peer i
            received = self.message_receiver(hv)[:, :, None]  # (B, 81, 1, W): to cell j
            messages = self.message(sent + received).sum(2)  # (B, 81, W)
            update = self.node(torch.cat([hv, x, messages], -1)).reshape(-1, width)
            h, c = self.lstm(update, (h, c))
            logits.append(self.out(h).view(batch, CELLS, DIGITS))
        return torch.stack(logits, 1), []
