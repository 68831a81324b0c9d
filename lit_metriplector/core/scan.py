"""The complex linear recurrence ``w_t = a_t w_{t-1} + b_t`` over a whole sequence at once.

It is how a sequence of exact steps of linear modes (``core/modes.py``) runs in parallel over
time. Complex numbers are carried as (real, imaginary) pairs of real tensors: complex ``exp`` and
arithmetic are ~14x slower on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

Complex = tuple[Tensor, Tensor]  # (real part, imaginary part)


def cmul(x: Complex, y: Complex) -> Complex:
    return x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0]


def cadd(x: Complex, y: Complex) -> Complex:
    return x[0] + y[0], x[1] + y[1]


def _scan(a: Complex, b: Complex, chunk: int) -> Complex:
    """``w_t = a_t w_{t-1} + b_t`` along axis 1 from ``w_0 = 0``, without autograd.

    Sequential inside chunks of ``chunk`` steps (all chunks at once), then the state at each
    chunk's end is carried into the next chunk (one chunk at a time). On CPU this beats a
    log-depth Hillis-Steele scan 2.5x and a plain loop 1.5x; every |a| <= 1, so it is stable.
    """
    steps = a[0].shape[1]
    length = min(chunk, steps)
    pad = -steps % length
    if pad:  # trailing a = b = 0 steps leave the earlier ones alone
        a, b = ([F.pad(x, [0, 0] * (x.dim() - 2) + [0, pad]) for x in z] for z in (a, b))
    split = (a[0].shape[0], -1, length, *a[0].shape[2:])  # (B, chunks, length, ...)
    a = tuple(x.reshape(split) for x in a)
    w = [x.reshape(split).clone() for x in b]  # becomes w, from rest at each chunk's start
    p = [x.clone() for x in a]  # becomes the product of a since each chunk's start
    for j in range(1, length):
        step = (a[0][:, :, j], a[1][:, :, j])
        w_j = cmul(step, (w[0][:, :, j - 1], w[1][:, :, j - 1]))
        p_j = cmul(step, (p[0][:, :, j - 1], p[1][:, :, j - 1]))
        for part in range(2):
            w[part][:, :, j] += w_j[part]
            p[part][:, :, j] = p_j[part]
    for k in range(1, w[0].shape[1]):
        carried = cmul((p[0][:, k], p[1][:, k]), (w[0][:, k - 1, -1:], w[1][:, k - 1, -1:]))
        for part in range(2):
            w[part][:, k] += carried[part]
    return tuple(x.flatten(1, 2)[:, :steps] for x in w)


class LinearRecurrence(torch.autograd.Function):
    """``w_t = a_t w_{t-1} + b_t`` with its adjoint, itself a recurrence run backwards in time:
    ``g_t = dl/dw_t + conj(a_{t+1}) g_{t+1}``, ``dl/db_t = g_t``, ``dl/da_t = g_t conj(w_{t-1})``.
    Nothing of the forward loop is kept for autograd: memory is that of ``a`` and ``w``."""

    @staticmethod
    def forward(ctx, ar: Tensor, ai: Tensor, br: Tensor, bi: Tensor, chunk: int):
        w = _scan((ar, ai), (br, bi), chunk)
        ctx.save_for_backward(ar, ai, *w)
        ctx.chunk = chunk
        return w

    @staticmethod
    def backward(ctx, gr: Tensor, gi: Tensor):
        ar, ai, wr, wi = ctx.saved_tensors
        after = (_shift(ar, -1).flip(1), -_shift(ai, -1).flip(1))  # conj(a_{t+1}), reversed
        g = _scan(after, (gr.flip(1), gi.flip(1)), ctx.chunk)
        g = (g[0].flip(1), g[1].flip(1))
        da = cmul(g, (_shift(wr, 1), -_shift(wi, 1)))
        return da[0], da[1], g[0], g[1], None


def _shift(x: Tensor, k: int) -> Tensor:
    """``x`` moved ``k`` steps later along axis 1 (earlier if negative), zero-filled."""
    pad = [0, 0] * (x.dim() - 2) + ([k, 0] if k > 0 else [0, -k])
    return F.pad(x, pad)[:, :-k] if k > 0 else F.pad(x, pad)[:, -k:]


def linear_recurrence(a: Complex, b: Complex, chunk: int = 16) -> Complex:
    """``w_t = a_t w_{t-1} + b_t`` along axis 1 of ``(B, T, ...)`` from ``w_0 = 0``; ``a`` and
    ``b`` of one shape, ``|a_t| <= 1``. ``chunk`` (steps per chunk) changes the speed only."""
    return LinearRecurrence.apply(*(x.contiguous() for x in (*a, *b)), chunk)
