"""The linear recurrence ``w_t = a_t w_{t-1} + b_t`` over a whole sequence at once.

It is how a sequence of exact steps of linear modes (``core/modes.py``) runs in parallel over
time: with complex scalars ``a`` for modes of fixed eigenvectors, with real 2x2 matrices for modes
whose frequency and friction change every step. Complex numbers are carried as (real, imaginary)
pairs of real tensors: complex ``exp`` and arithmetic are ~14x slower on CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

Complex = tuple[Tensor, Tensor]  # (real part, imaginary part)


def cmul(x: Complex, y: Complex) -> Complex:
    return x[0] * y[0] - x[1] * y[1], x[0] * y[1] + x[1] * y[0]


def cadd(x: Complex, y: Complex) -> Complex:
    return x[0] + y[0], x[1] + y[1]


def conj(x: Complex) -> Complex:
    return x[0], -x[1]


Matrix = tuple[Tensor, Tensor, Tensor, Tensor]  # real 2x2 (m00, m01, m10, m11), element-wise
Vector = tuple[Tensor, Tensor]


# In place, into slices of the scan's buffers: a step of the chunk loop is then 8 to 12 kernels
# rather than 24 with temporaries and copies (a third of the scan's time, at batch 16 x 256).
def _cmul_add(out: Complex, x: Complex, y: Complex) -> None:
    """``out += x y``."""
    out[0].addcmul_(x[0], y[0]).addcmul_(x[1], y[1], value=-1)
    out[1].addcmul_(x[0], y[1]).addcmul_(x[1], y[0])


def _cmul_into(out: Complex, x: Complex, y: Complex) -> None:
    """``out = x y``."""
    torch.mul(x[0], y[0], out=out[0]).addcmul_(x[1], y[1], value=-1)
    torch.mul(x[0], y[1], out=out[1]).addcmul_(x[1], y[0])


def _matvec_add(out: Vector, m: Matrix, v: Vector) -> None:
    """``out += m v``."""
    out[0].addcmul_(m[0], v[0]).addcmul_(m[1], v[1])
    out[1].addcmul_(m[2], v[0]).addcmul_(m[3], v[1])


def _matmul_into(out: Matrix, m: Matrix, n: Matrix) -> None:
    """``out = m n``."""
    for i in range(2):
        for j in range(2):
            torch.mul(m[2 * i], n[j], out=out[2 * i + j]).addcmul_(m[2 * i + 1], n[2 + j])


class Algebra(NamedTuple):
    """The coefficients ``a`` of a recurrence ``w_t = a_t w_{t-1} + b_t``: ``out += a w``
    (``apply``) and ``out = a a'`` (``compose``) in place, the adjoint of ``a``, and ``dl/da`` of
    the term ``a w`` given ``g = dl/d(a w)`` (``gradient``)."""

    apply: Callable
    compose: Callable
    adjoint: Callable
    gradient: Callable


# Complex scalars (damped modes in their eigen coordinates) and real 2x2 matrices (modes whose
# eigenvectors change from step to step, acting on (phi, pi)).
COMPLEX = Algebra(_cmul_add, _cmul_into, conj, lambda g, w: cmul(g, conj(w)))
MATRIX = Algebra(
    _matvec_add,
    _matmul_into,
    lambda m: (m[0], m[2], m[1], m[3]),
    lambda g, w: (g[0] * w[0], g[0] * w[1], g[1] * w[0], g[1] * w[1]),
)


def _scan(
    algebra: Algebra, a: tuple[Tensor, ...], b: tuple[Tensor, ...], chunk: int, reverse: bool
):
    """``w_t = a_t w_{t-1} + b_t`` along axis 1 from ``w_0 = 0`` or, with ``reverse``, ``w_t =
    a_{t+1} w_{t+1} + b_t`` from the end (the adjoint's direction), without autograd.

    Sequential inside chunks of ``chunk`` steps (all chunks at once), then the state at each
    chunk's end is carried into the next chunk (one chunk at a time). On CPU this beats a
    log-depth Hillis-Steele scan 2.5x and a plain loop 1.5x; every |a| <= 1, so it is stable.
    Running backwards in place, rather than on flipped copies, saves the adjoint a third of its
    time (every copy of a whole sequence costs as much as a step of the chunk loop).
    """
    steps = a[0].shape[1]
    length = min(chunk, steps)
    pad = -steps % length
    if pad:  # trailing a = b = 0 steps leave the earlier ones alone (either way)
        a, b = ([F.pad(x, [0, 0] * (x.dim() - 2) + [0, pad]) for x in z] for z in (a, b))
    split = (a[0].shape[0], -1, length, *a[0].shape[2:])  # (B, chunks, length, ...)
    a = tuple(x.reshape(split) for x in a)
    w = [x.reshape(split).clone() for x in b]  # becomes w, from rest at each chunk's edge
    p = [torch.empty_like(x) for x in a]  # the product of a since the chunk's edge
    n = w[0].shape[1]
    chunks = range(1, n)
    if reverse:  # within a chunk w_j gets a_{j+1} w_{j+1}; past its end, a of the next chunk
        inner, last, edge = range(length - 2, -1, -1), length - 1, 0
        for x, y in zip(p, a, strict=True):
            x[:, :-1, last] = y[:, 1:, 0]
            x[:, -1, last] = 0
        chunks = reversed(range(n - 1))
    else:
        inner, last, edge = range(1, length), 0, -1
        for x, y in zip(p, a, strict=True):
            x[:, :, 0] = y[:, :, 0]
    for j in inner:
        prev = j + 1 if reverse else j - 1
        step = tuple(x[:, :, j + 1 if reverse else j] for x in a)
        algebra.apply([x[:, :, j] for x in w], step, [x[:, :, prev] for x in w])
        algebra.compose([x[:, :, j] for x in p], step, [x[:, :, prev] for x in p])
    for k in chunks:  # forward: the end of chunk k - 1 into chunk k; reverse: k + 1's start
        other = k + 1 if reverse else k - 1
        edges = [x[:, other, edge : edge + 1 or None] for x in w]
        algebra.apply([x[:, k] for x in w], [x[:, k] for x in p], edges)
    return tuple(x.flatten(1, 2)[:, :steps] for x in w)


class Recurrence(torch.autograd.Function):
    """``w_t = a_t w_{t-1} + b_t`` with its adjoint, itself a recurrence run backwards in time:
    ``g_t = dl/dw_t + a_{t+1}^H g_{t+1}``, ``dl/db_t = g_t``, ``dl/da_t = g_t w_{t-1}^H``.
    Nothing of the forward loop is kept for autograd: memory is that of ``a`` and ``w``."""

    @staticmethod
    def forward(ctx, algebra: Algebra, chunk: int, parts: int, *tensors: Tensor):
        a, b = tensors[:parts], tensors[parts:]
        w = _scan(algebra, a, b, chunk, reverse=False)
        ctx.save_for_backward(*a, *w)
        ctx.algebra, ctx.chunk, ctx.parts = algebra, chunk, parts
        return w

    @staticmethod
    def backward(ctx, *grads: Tensor):
        saved, parts, algebra = ctx.saved_tensors, ctx.parts, ctx.algebra
        a, w = saved[:parts], saved[parts:]
        g = _scan(algebra, algebra.adjoint(a), grads, ctx.chunk, reverse=True)
        da = algebra.gradient(g, tuple(_shift(x, 1) for x in w))
        return None, None, None, *da, *g


def _shift(x: Tensor, k: int) -> Tensor:
    """``x`` moved ``k > 0`` steps later along axis 1, zero-filled."""
    return F.pad(x, [0, 0] * (x.dim() - 2) + [k, 0])[:, :-k]


def linear_recurrence(a: Complex, b: Complex, chunk: int = 16) -> Complex:
    """``w_t = a_t w_{t-1} + b_t`` along axis 1 of ``(B, T, ...)`` from ``w_0 = 0``; ``a`` and
    ``b`` of one shape, ``|a_t| <= 1``. ``chunk`` (steps per chunk) changes the speed only."""
    return Recurrence.apply(COMPLEX, chunk, 2, *(x.contiguous() for x in (*a, *b)))


def matrix_recurrence(m: Matrix, c: Vector, chunk: int = 16) -> Vector:
    """``x_t = M_t x_{t-1} + c_t`` along axis 1 of ``(B, T, ...)`` from ``x_0 = 0``, for real
    2x2 ``M_t`` (entries ``(m00, m01, m10, m11)``, each shaped like ``c``'s parts) of spectral
    radius <= 1. ``chunk`` changes the speed only."""
    return Recurrence.apply(MATRIX, chunk, 4, *(x.contiguous() for x in (*m, *c)))
