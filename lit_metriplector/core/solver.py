"""Equilibrium of the dissipative branch: ``A phi = source`` by preconditioned conjugate gradient.

For ``quartic = 0`` the gradient flow ``dphi/dt = -Gamma h`` relaxes to the screened Poisson
equation ``A phi = rho`` with ``A = -div(kappa grad) + mass2 + W``. ``solve`` finds it directly
and differentiates it implicitly: the backward pass solves the adjoint system ``A lam = dl/dphi``
with the same solver, then

    dl/drho = lam,  dl/dkappa_e = -(grad_e lam)(grad_e phi),  dl/dmass2 = -lam phi,
    dl/dW = -sum_x lam_x phi_x^T,

so memory does not grow with the number of iterations.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .preconditioners import Preconditioner, PreconditionerName, make_preconditioner
from .system import System, ledger_dtype

Operator = Callable[[Tensor], Tensor]


@dataclass
class SolveInfo:
    """Per-sample outcome of a solve: iterations, final relative residual, convergence."""

    iterations: Tensor
    residual: Tensor
    converged: Tensor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def _per_sample(v: Tensor, like: Tensor) -> Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def default_max_iter(system: System, preconditioner: PreconditionerName = "jacobi") -> int:
    """Iteration cap: plain and Jacobi CG need about as many iterations as the lattice is wide;
    the elimination preconditioner needs a handful at any size (tens with leaky walls), so past
    a hundred it has stalled and more iterations only cost time."""
    width = system.lattice.diameter + 1
    return max(100, (5 if preconditioner == "elimination" else 50) * width)


def conjugate_gradient(
    operator: Operator,
    b: Tensor,
    precondition: Operator | None = None,
    x0: Tensor | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    operator_norm: Tensor | None = None,
) -> tuple[Tensor, SolveInfo]:
    """Batched preconditioned CG for a symmetric PSD ``operator`` on ``(B, ...)`` tensors.

    Each sample stops on its own at ``||r|| <= tol ||b||`` (its updates are masked to zero), the
    loop ends when all have. Over thousands of float32 iterations the recursive residual drifts
    from the true one and CG can stop on a residual it does not have, hence the check of the true
    residual below. Written without in-place updates, so autograd can also backpropagate through
    the unrolled iterations (the reference the implicit gradient is tested against).

    The true residual of any solution computed in a precision with unit roundoff ``eps``
    bottoms out near ``eps ||A|| ||x||``: on badly conditioned systems (large unscreened mazes)
    that floor lies above ``tol ||b||`` and no iteration can reach ``tol``. Given
    ``operator_norm`` (an upper bound of ``||A||`` per sample), a solution whose normwise
    backward error ``||r|| / (||A|| ||x|| + ||b||)`` is within ``100 eps`` also counts as
    converged: it is as accurate as the precision allows.

    Returns:
        ``x`` and a ``SolveInfo`` with the *true* relative residual ``||b - A x|| / ||b||``;
        a sample counts as converged when that is within ``10 tol`` (or, for tolerances below
        what the dtype can reach, within ``100 eps``), or at the precision's floor (above).
    """
    precondition = precondition or (lambda r: r)
    x = torch.zeros_like(b) if x0 is None else x0
    r = b if x0 is None else b - operator(x)
    b_norm = b.flatten(1).norm(dim=1)
    target = tol * b_norm
    z = precondition(r)
    p, rz = z, _dot(r, z)
    done = r.flatten(1).norm(dim=1) <= target
    iterations = torch.zeros_like(b_norm, dtype=torch.long)
    for _ in range(max_iter):
        if bool(done.all()):
            break
        ap = operator(p)
        pap = _dot(p, ap)
        alpha = torch.where(done | (pap <= 0), 0.0, rz / torch.where(done | (pap <= 0), 1.0, pap))
        x = x + _per_sample(alpha, x) * p
        r = r - _per_sample(alpha, r) * ap
        iterations = iterations + (~done).long()
        done = done | (r.flatten(1).norm(dim=1) <= target)
        z = precondition(r)
        rz_new = _dot(r, z)
        beta = torch.where(done, 0.0, rz_new / torch.where(done | (rz == 0), 1.0, rz))
        p = z + _per_sample(beta, p) * p
        rz = rz_new
    with torch.no_grad():
        true_r = (b - operator(x)).flatten(1).norm(dim=1)
        residual = true_r / torch.where(b_norm > 0, b_norm, 1.0)
    # A right-hand side that is not finite (or too large for a norm in this precision) stops CG
    # at once with x = 0, a silent wrong answer: make it NaN, so the divergence stays visible.
    broken = ~torch.isfinite(residual)
    x = torch.where(_per_sample(broken, x), torch.nan, x)
    eps = torch.finfo(b.dtype).eps
    reached = residual <= max(10 * tol, 100 * eps)
    if operator_norm is not None:
        scale = operator_norm * x.flatten(1).norm(dim=1) + b_norm
        reached = reached | (true_r <= 100 * eps * scale)
    return x, SolveInfo(iterations, residual, done & reached)


@dataclass(frozen=True)
class CGOptions:
    """Settings of a solve: one typed group from the config down to the solver.

    Args:
        tol: relative residual at which a sample stops.
        max_iter: iteration cap; ``None`` scales it with the lattice (``default_max_iter``).
        preconditioner: ``"none"`` (plain CG), ``"jacobi"`` (diagonal of ``A``) or
            ``"elimination"`` (multilevel incomplete factorisation, exact on forests such as
            perfect mazes; see ``preconditioners``).
        dtype: precision of the solve; low-precision inputs (bf16/fp16) are promoted to it.
        flush_denormals: on CPU, flush denormal floats to zero while solving (several-fold
            faster on large lattices); torch's default (no flushing) is restored afterwards.
        max_degree: elimination: only sites with at most this many neighbours are eliminated.
        keep: elimination: an edge survives a level if it is among the ``keep`` strongest of
            one of its endpoints.
        max_levels: elimination: levels before a final Jacobi step.
    """

    tol: float = 1e-6
    max_iter: int | None = None
    preconditioner: PreconditionerName = "jacobi"
    dtype: Literal["float32", "float64"] = "float32"
    flush_denormals: bool = True
    max_degree: int = 6
    keep: int = 4
    max_levels: int = 64

    def __post_init__(self) -> None:
        if isinstance(self.dtype, torch.dtype):  # Python callers may pass torch.float64
            object.__setattr__(self, "dtype", str(self.dtype).removeprefix("torch."))
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def precondition(self, system: System, like: Tensor) -> Preconditioner | None:
        """The configured preconditioner of ``system`` (``like`` fixes shape and dtype)."""
        settings = dict(max_degree=self.max_degree, keep=self.keep, max_levels=self.max_levels)
        return make_preconditioner(self.preconditioner, system, like, **settings)


@contextmanager
def _flush_denormals(enabled: bool):
    """Krylov vectors decay geometrically away from the sources; on CPUs the denormal floats
    this produces slow every operation several-fold. Flush them to zero during the solve, then
    return to torch's default (torch offers no way to read the previous setting)."""
    if not enabled or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def _grounding(system: System, like: Tensor):
    """Projection onto the range of an unscreened ``A``: zero on isolated sites (no conductance:
    their rows of ``A`` vanish) and mean zero over the others (the constants there are the
    null space when the conducting sites form one connected graph)."""
    active = (system.operator_diagonal(like) > 0).to(like.dtype)
    count = active.flatten(2).sum(-1).clamp_min(1).view(*like.shape[:2], *[1] * (like.dim() - 2))

    def ground(t: Tensor) -> Tensor:
        t = t * active
        mean = t.flatten(2).sum(-1).view_as(count) / count
        return (t - mean) * active

    return ground


def norm_bound(diagonal: Tensor, coupling: Tensor | None) -> Tensor:
    """Gershgorin bound of ``||A||`` per sample from ``diag A`` ``(B, C, ...)``: every row of
    ``A`` sums in absolute value to at most twice its diagonal (the Laplacian's off-diagonals
    mirror its diagonal) plus the off-diagonal channel coupling."""
    bound = 2 * diagonal.flatten(1).amax(1)
    if coupling is not None:
        bound = bound + coupling.abs().sum(1).amax()
    return bound


def _pcg(
    system: System, b: Tensor, options: CGOptions, x0: Tensor | None, pre: Preconditioner | None
) -> tuple:
    max_iter = options.max_iter or default_max_iter(system, options.preconditioner)
    ground = _grounding(system, b) if system.is_unscreened else None
    if ground is not None:  # A is singular: solve within its range
        b = ground(b)
    with _flush_denormals(options.flush_denormals and b.device.type == "cpu"):
        x, info = conjugate_gradient(
            system.operator,
            b,
            pre,
            x0,
            options.tol,
            max_iter,
            norm_bound(system.operator_diagonal(b), system.coupling),
        )
    return (x if ground is None else ground(x)), info


def _unconverged_message(info: SolveInfo, what: str) -> str:
    bad = int((~info.converged).sum())
    return (
        f"CG {what} did not converge for {bad}/{info.converged.numel()} samples after "
        f"{int(info.iterations.max())} iterations (worst relative residual "
        f"{float(info.residual.max()):.2e}); raise max_iter or use a stronger preconditioner"
    )


class SolveTally:
    """Solved samples and non-converged ones of one run (a task activates its own for a fit).
    The first non-converged solve warns; later ones are only counted, and the task logs the
    counts (and a summary at the end of the fit), so persistent non-convergence is reported
    once, with numbers. Solves outside an active tally warn each time (Python shows a warning
    once per place in the code by default)."""

    def __init__(self) -> None:
        self.samples, self.unconverged, self.worst_residual, self.warned = 0, 0, 0.0, False

    def activate(self) -> None:
        """Start counting from zero: the solves of this thread (and context) record here."""
        self.__init__()
        _ACTIVE.set(self)

    @staticmethod
    def deactivate() -> None:
        _ACTIVE.set(None)

    def record(self, info: SolveInfo, what: str) -> None:
        self.samples += info.converged.numel()
        if bool(info.converged.all()):
            return
        self.unconverged += int((~info.converged).sum())
        self.worst_residual = max(self.worst_residual, float(info.residual.max()))
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"{_unconverged_message(info, what)}. Further non-converged solves are counted "
                f"(solver/* in the logs), not repeated",
                RuntimeWarning,
                stacklevel=4,
            )


# The tally of the running run; a context variable, so that two runs never share one.
_ACTIVE: ContextVar[SolveTally | None] = ContextVar("lit_metriplector_solve_tally", default=None)


def record_solve(info: SolveInfo, what: str) -> None:
    """Count a solve's outcome in the active tally, or warn if it missed its tolerance."""
    tally = _ACTIVE.get()
    if tally is not None:
        tally.record(info, what)
    elif not bool(info.converged.all()):
        warnings.warn(_unconverged_message(info, what), RuntimeWarning, stacklevel=3)


def implicit_gradients(
    operator: Callable[..., Operator], coefficients: Sequence[Tensor | None], lam: Tensor, x: Tensor
) -> list[Tensor | None]:
    """The gradients of a loss through ``x = A(theta)^-1 b`` with respect to the coefficients
    ``theta`` of ``A``, given the adjoint solution ``lam = A^-T dl/dx``: ``dl/dtheta = -lam^T
    (dA/dtheta) x``, by autograd through one application ``operator(*theta)(x)``. One rule for
    every operator (lattice systems, the fused grid stencil); ``None`` for a coefficient that is
    ``None`` or does not require a gradient (``coefficients`` given as they reached ``forward``,
    with ``ctx.needs_input_grad`` folded in by the caller)."""
    with torch.enable_grad():
        leaves = [None if c is None else c.detach().requires_grad_() for c in coefficients]
        value = -(lam * operator(*leaves)(x)).sum()
        wanted = [leaf for leaf in leaves if leaf is not None]
        grads = iter(torch.autograd.grad(value, wanted, allow_unused=True))
    return [None if leaf is None else next(grads) for leaf in leaves]


class _ImplicitSolve(torch.autograd.Function):
    """``phi = A(kappa, mass2, W)^-1 source`` with the adjoint-method backward."""

    @staticmethod
    def forward(ctx, kappa, mass2, source, coupling, x0, lattice, options, pre):
        system = System(lattice, kappa, mass2=mass2, coupling=coupling)
        if pre is None:  # built once, for the forward solve and its adjoint
            pre = options.precondition(system, source)
        phi, info = _pcg(system, source, options, x0, pre)
        record_solve(info, "solve")
        ctx.lattice, ctx.options, ctx.source_shape = lattice, options, source.shape
        ctx.pre = pre
        ctx.save_for_backward(kappa, mass2, coupling, phi)
        ctx.mark_non_differentiable(info.iterations, info.residual, info.converged)
        return phi, info.iterations, info.residual, info.converged

    @staticmethod
    def backward(ctx, grad_phi, *_):
        kappa, mass2, coupling, phi = ctx.saved_tensors
        lattice = ctx.lattice
        system = System(lattice, kappa, mass2=mass2, coupling=coupling)
        lam, info = _pcg(system, grad_phi.to(phi.dtype), ctx.options, None, ctx.pre)
        record_solve(info, "adjoint solve")

        def operator(kappa, mass2, coupling):
            return System(lattice, kappa, mass2=mass2, coupling=coupling).operator

        needs = ctx.needs_input_grad
        coefficients = zip((kappa, mass2, coupling), (needs[0], needs[1], needs[3]), strict=True)
        wanted = [t if need else None for t, need in coefficients]
        g_kappa, g_mass2, g_coupling = implicit_gradients(operator, wanted, lam, phi)
        g_source = lam.sum_to_size(ctx.source_shape) if needs[2] else None
        return g_kappa, g_mass2, g_source, g_coupling, None, None, None, None


def solve_dtype(system: System, options: CGOptions) -> torch.dtype:
    """Precision of a solve: the configured one, or higher if the source is."""
    return torch.promote_types(options.torch_dtype, ledger_dtype(system.source.dtype))


def solve(
    system: System,
    options: CGOptions | None = None,
    x0: Tensor | None = None,
    preconditioner: Preconditioner | None = None,
) -> tuple[Tensor, SolveInfo]:
    """Equilibrium ``phi* = A^-1 source`` of a linear dissipative system, differentiable.

    Without screening and coupling (``mass2`` and ``coupling`` both ``None``) ``A`` is a graph
    Laplacian, singular on constants: the solve then uses the grounded gauge, ``phi* = A^+ rho``
    with the net charge of ``rho`` removed and ``phi*`` of mean zero (per sample and field);
    isolated sites (no conductance at all, e.g. maze walls) hold ``phi* = 0``. The adjoint solve
    is projected the same way, which is the exact gradient of the pseudo-inverse as long as the
    conducting sites form one connected graph (then constants there are the whole null space).

    Gradients reach ``kappa``, ``mass2``, ``source`` and ``coupling`` through the adjoint solve.
    The solve runs in ``options.dtype`` (float32 by default) even under bf16 autocast; the result
    is returned in that precision. The preconditioner is built once and serves the adjoint solve
    too; pass one built by ``options.precondition`` (on the system cast to ``solve_dtype``) to
    share it between solves of one operator, e.g. the steps of a rollout.

    Returns:
        ``phi*`` and the per-sample ``SolveInfo`` of the forward solve.
    """
    if not system.is_linear:
        raise ValueError("solve() needs quartic == 0; integrate the gradient flow instead")
    if system.source is None:
        raise ValueError("solve() needs a source: with none the equilibrium is phi = 0")
    options = options or CGOptions()
    dtype = solve_dtype(system, options)

    def cast(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.to(dtype)

    device_type = system.source.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        phi, iterations, residual, converged = _ImplicitSolve.apply(
            cast(system.kappa),
            cast(system.mass2),
            cast(system.source),
            cast(system.coupling),
            None if x0 is None else cast(x0.detach()),
            system.lattice,
            options,
            preconditioner,
        )
    return phi, SolveInfo(iterations, residual, converged)
