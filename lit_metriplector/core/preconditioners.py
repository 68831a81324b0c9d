"""Preconditioners for the CG solve of ``A phi = rho``: maps ``r -> M^-1 r`` with ``M ~ A``."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .system import System

Preconditioner = Callable[[Tensor], Tensor]


def jacobi(system: System, like: Tensor) -> Preconditioner:
    """``M = diag A``, known in closed form. Isolated sites with ``diag A = 0`` (walls without
    screening) carry no residual; they are left unscaled."""
    diag = system.operator_diagonal(like)
    inv = 1.0 / diag.where(diag > 0, 1.0)
    return lambda r: inv * r


def make_preconditioner(name: str, system: System, like: Tensor) -> Preconditioner | None:
    """Build the preconditioner ``name`` for ``system``; ``like`` fixes shape and dtype."""
    if name == "none":
        return None
    if name == "jacobi":
        return jacobi(system, like)
    raise ValueError(f"unknown preconditioner {name!r}; expected 'none' or 'jacobi'")
