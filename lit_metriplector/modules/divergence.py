"""What went wrong when training diverges: the first non-finite gradient, and the state of each
Metriplector layer on the batch where it happened."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..core import DynamicsReport


def nonfinite_gradient(module: nn.Module) -> str | None:
    """The name of the first parameter whose gradient holds a NaN or an infinity, if any. One
    fused norm over all gradients, so the common (finite) case costs one small reduction."""
    named = [(name, p.grad) for name, p in module.named_parameters() if p.grad is not None]
    if not named:
        return None
    norms = torch.stack(torch._foreach_norm([g.detach().float() for _, g in named]))
    if bool(torch.isfinite(norms).all()):
        return None
    return named[int((~torch.isfinite(norms)).nonzero()[0])][0]


def describe_reports(output: Tensor, reports: list[DynamicsReport]) -> str:
    """One clause per layer: are the fields finite, how the solve or the energy ledger went."""
    parts = [f"output {'finite' if bool(torch.isfinite(output).all()) else 'NOT finite'}"]
    for i, report in enumerate(reports):
        phi = report.state.phi
        facts = [f"fields {'finite' if bool(torch.isfinite(phi).all()) else 'NOT finite'}"]
        facts.append(f"|phi| max {float(phi.abs().nan_to_num(float('inf')).max()):.3g}")
        if report.solve is not None:
            info = report.solve
            facts.append(
                f"CG residual {float(info.residual.max()):.3g} after "
                f"{int(info.iterations.max())} iterations"
            )
        if report.ledger is not None:
            h = report.ledger.hamiltonian
            facts.append(f"H from {float(h[0].mean()):.3g} to {float(h[-1].mean()):.3g}")
        parts.append(f"layer {i}: " + ", ".join(facts))
    return "; ".join(parts)
