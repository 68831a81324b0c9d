"""Sudoku with zero structural injection: the constraint graph is learned (docs/architecture.md).

The 81 cells are the sites of a fully connected graph whose couplings ``K_h`` (``H`` graphs,
``(H, 81, 81)``, symmetric, ``>= 0``) are parameters shared by every puzzle
(``core.coupling.SharedCoupling``): rows, columns and boxes are never given, and the network
knows nothing of where a cell sits but what the coupling learns. Nothing else tells cells apart:
the network is equivariant under any relabelling of the cells that is applied to ``K`` as well.

Each iteration, with the same weights::

    u = h + embed(puzzle)                                        recall the givens
    u --configure--> site conductivity k, mass2, source rho (+ the givens' own sources), friction
                 gamma, initial fields phi0                        the input configures the system
    rollout: ``steps`` strang steps of CoupledSystem(k, K, ...)   full branch: waves + friction
    T^00, L per site and field --asinh--> MLP([T, u])             stress-energy readout
    h = LayerNorm(h + dh);  logits_t = out(h)                     post-norm recurrent state

and the network returns the logits of every iteration ``(B, T, 81, 9)`` (a loss at each). In
training the number of iterations is drawn from ``train_iterations`` per batch, so the state
learns to stay put once solved (with ``detached_iterations``, after a random number of
iterations run without gradients, so the trained ones start from states of long rollouts at the
cost of forward passes only); at test time ``test_iterations`` can be any number (more
iterations do not make the answer worse: see ``benchmarks/sudoku.py``).

The rates are bounded by construction so the explicit steps are stable: conductivities in
``(0, 1)``, degrees below ``coupling_scale``, masses below ``max_mass2``, and the time step below
``1.8 / sqrt(2 coupling_scale + max_mass2)`` (leapfrog is stable while ``dt omega_max < 2``).

``graph="partition"`` learns each head as a soft partition of the cells into ``groups`` labels
(``core.coupling.PartitionCoupling``): a head cannot hold the union of rows, columns and boxes,
so the heads must split it. ``graph="given"`` replaces the learned coupling by the true
constraint graph (every head the 20 peers of each cell), for the ablation. No classical solver
touches the answer.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import (
    CoupledSystem,
    DenseGraph,
    DynamicsReport,
    PartitionCoupling,
    SharedCoupling,
    State,
    rollout,
    stress_energy,
)
from .layers import fast_asinh

CELLS = 81
DIGITS = 9


def draw(bounds: tuple[int, int]) -> int:
    """A number of iterations drawn uniformly from the inclusive range ``bounds``."""
    return int(torch.randint(bounds[0], bounds[1] + 1, ()))


def given_graph(graphs: int, scale: float) -> Tensor:
    """The true constraint graph as a coupling ``(H, 81, 81)``: the 20 peers of each cell with
    the weight a learned coupling saturates at, ``scale / 80``, on every head."""
    from ..datasets.sudoku.structure import peers  # only the ablation reads the true graph

    return peers().float().expand(graphs, CELLS, CELLS) * (scale / (CELLS - 1))


class SudokuNetwork(nn.Module):
    """Per-iteration digit logits for Sudoku puzzles ``(B, 81)`` (digits, 0 = blank).

    Args:
        features: width ``D`` of the recurrent site state.
        fields: fields ``C`` per site (split evenly over the coupling graphs).
        graphs: coupling graphs ``H``, each an independent learned graph.
        steps: integrator steps per iteration.
        iterations: iterations at eval time (and the nominal training depth).
        train_iterations: inclusive range of the number of iterations drawn per training batch;
            ``None`` trains at ``iterations``.
        detached_iterations: inclusive range of the number of iterations run without gradients
            before the trained ones, drawn per training batch (``None``: none); the loss sees
            only the trained ones.
        test_iterations: iterations at eval time, overriding ``iterations`` (e.g. 2x or 4x the
            trained depth).
        graph: ``"learned"`` (zero structural injection: any symmetric graph), ``"partition"``
            (each head a learned partition of the cells into at most ``groups`` cliques; rows,
            columns and boxes are never given either) or ``"given"`` (the true graph).
        groups: labels per head of the ``"partition"`` graph.
        homogeneity: weight of the ``"partition"`` heads' heterogeneity in the loss
            (``core.coupling.head_heterogeneity``: a head whose groups meet another head's
            groups unalike, as one mixing columns and boxes does, costs more; no board geometry
            is read). 0: off.
        integrator: ``"strang"`` (structure preserving) or ``"euler"``.
        dt: initial time step (learned, below the stability bound).
        coupling_scale: bound of each site's weighted degree in ``K``.
        coupling_gain: learning-rate multiplier of the coupling (``SharedCoupling``'s ``gain``).
        max_mass2: bound of the screening mass.
        readout: transform of ``T`` before the update MLP.
        halt: test-time depth: at eval, a puzzle stops once its digits have not changed for
            this many iterations (its logits are kept for the rest; ``None``: every puzzle runs
            every iteration). Off with diagnostics.
        rollouts: test-time breadth: at eval, this many rollouts of each puzzle, the first from
            the configured initial fields, the others with Gaussian noise of scale ``noise``
            added to them at every iteration; the answer is the rollout the model is most
            confident of (the mean over blank cells of its largest digit probability). Never the
            Sudoku rules: that would be structure the model was not given.
        noise: scale of the initial-field noise of the extra rollouts.
    """

    def __init__(
        self,
        features: int = 64,
        fields: int = 32,
        graphs: int = 4,
        steps: int = 2,
        iterations: int = 8,
        train_iterations: tuple[int, int] | None = (4, 12),
        detached_iterations: tuple[int, int] | None = None,
        test_iterations: int | None = None,
        graph: Literal["learned", "partition", "given"] = "learned",
        groups: int = 9,
        homogeneity: float = 0.0,
        integrator: Literal["strang", "euler"] = "strang",
        dt: float = 0.4,
        coupling_scale: float = 4.0,
        coupling_gain: float = 10.0,
        max_mass2: float = 1.0,
        readout: Literal["asinh", "linear"] = "asinh",
        halt: int | None = None,
        rollouts: int = 1,
        noise: float = 0.5,
    ) -> None:
        super().__init__()
        if (halt is not None and halt < 1) or rollouts < 1 or noise < 0:
            raise ValueError(
                f"need halt >= 1 (or None), rollouts >= 1, noise >= 0; got halt={halt}, "
                f"rollouts={rollouts}, noise={noise}"
            )
        if fields % graphs:
            raise ValueError(f"fields={fields} must be a multiple of graphs={graphs}")
        if train_iterations is not None and not 1 <= train_iterations[0] <= train_iterations[1]:
            raise ValueError(f"train_iterations={train_iterations}: need 1 <= low <= high")
        if (
            detached_iterations is not None
            and not 0 <= detached_iterations[0] <= detached_iterations[1]
        ):
            raise ValueError(f"detached_iterations={detached_iterations}: need 0 <= low <= high")
        if min(steps, iterations, test_iterations or 1) < 1:
            raise ValueError("steps, iterations and test_iterations must be >= 1")
        if graph not in ("learned", "partition", "given"):
            raise ValueError(f"graph must be 'learned', 'partition' or 'given', got {graph!r}")
        if homogeneity < 0 or (homogeneity and graph != "partition"):
            raise ValueError(f"homogeneity={homogeneity} needs >= 0 and graph='partition'")
        self.homogeneity = homogeneity
        self.fields, self.graphs, self.steps = fields, graphs, steps
        self.iterations, self.test_iterations = iterations, test_iterations
        self.train_iterations = None if train_iterations is None else tuple(train_iterations)
        self.detached_iterations = (
            None if detached_iterations is None else tuple(detached_iterations)
        )
        self.integrator, self.readout = integrator, readout
        self.halt, self.rollouts, self.noise = halt, rollouts, noise
        self.max_mass2 = max_mass2
        self.max_dt = 1.8 / math.sqrt(2 * coupling_scale + max_mass2)
        if not 0 < dt < self.max_dt:
            raise ValueError(f"dt={dt} must lie in (0, {self.max_dt:.3f}), the stability bound")
        self.lattice = DenseGraph(CELLS)
        if graph == "learned":
            self.coupling = SharedCoupling(CELLS, graphs, coupling_scale, gain=coupling_gain)
        elif graph == "partition":
            self.coupling = PartitionCoupling(
                CELLS, graphs, groups, coupling_scale, gain=coupling_gain
            )
        else:
            self.coupling = None
            self.register_buffer("fixed_graph", given_graph(graphs, coupling_scale))
        self.embed = nn.Embedding(DIGITS + 1, features)
        self.given_source = nn.Embedding(DIGITS + 1, fields, padding_idx=0)
        self.coefficient_sizes = {
            name: fields for name in ("k", "mass2", "source", "gamma", "phi0")
        }
        self.coefficients = nn.Linear(features, sum(self.coefficient_sizes.values()))
        # logit of dt / max_dt
        self.dt_logit = nn.Parameter(torch.tensor(math.log(dt / (self.max_dt - dt))))
        self.update = nn.Sequential(
            nn.Linear(2 * fields + features, features), nn.GELU(), nn.Linear(features, features)
        )
        self.norm = nn.LayerNorm(features)
        self.out = nn.Linear(features, DIGITS)

    @property
    def dt(self) -> Tensor:
        return self.max_dt * torch.sigmoid(self.dt_logit)

    def coupling_matrix(self) -> Tensor:
        """The coupling ``K`` ``(H, 81, 81)`` the dynamics uses (learned or given)."""
        return self.coupling() if self.coupling is not None else self.fixed_graph

    def penalty(self) -> Tensor:
        """What the loss adds for the network itself: the weighted heterogeneity of partition
        heads (0 when ``homogeneity`` is off)."""
        if not self.homogeneity:
            return self.embed.weight.new_zeros(())
        return self.homogeneity * self.coupling.heterogeneity()

    def num_iterations(self) -> int:
        """Iterations of this forward pass: drawn in training, fixed at eval."""
        if self.training and self.train_iterations is not None:
            return draw(self.train_iterations)
        return self.test_iterations or self.iterations

    def compile(self, **options) -> None:
        """Compile one iteration (``_step``) in place (options as ``torch.compile``'s) rather
        than the whole network: the depth is drawn per batch, so a compiled loop would be traced
        again for every depth, while every iteration reuses one compiled step. On one CPU thread
        a training step at 16 iterations runs 2x faster after about 20 s of compiling."""
        self._step = torch.compile(self._step, **options)

    def configure(
        self, u: Tensor, puzzle: Tensor, graph: Tensor, noise: Tensor | None = None
    ) -> tuple[CoupledSystem, State]:
        """The system and initial state of one iteration from the state ``u`` ``(B, 81, D)``;
        ``noise`` ``(B, C, 81)`` is added to the initial fields."""
        sizes = list(self.coefficient_sizes.values())
        raw = dict(
            zip(
                self.coefficient_sizes,
                self.coefficients(u).transpose(1, 2).split(sizes, 1),
                strict=True,
            )
        )  # each (B, C, 81)
        source = raw["source"] + self.given_source(puzzle).transpose(1, 2)
        system = CoupledSystem(
            self.lattice,
            torch.sigmoid(raw["k"]),
            mass2=self.max_mass2 * torch.sigmoid(raw["mass2"]),
            source=source,
            gamma=F.softplus(raw["gamma"]),
            graph=graph,
        )
        phi0 = raw["phi0"] if noise is None else raw["phi0"] + noise
        return system, State(phi0, torch.zeros_like(phi0), torch.zeros_like(phi0[:, 0]))

    def forward(self, x: Tensor, diagnostics: bool = False) -> tuple[Tensor, list[DynamicsReport]]:
        """Logits ``(B, T, 81, 9)`` of every iteration for puzzles ``x`` ``(B, 81)`` (digits,
        0 = blank) and, if asked, one report per iteration (energy and entropy ledgers)."""
        return self.iterate(x, None, diagnostics)

    def iterate(
        self, puzzle: Tensor, iterations: int | None = None, diagnostics: bool = False
    ) -> tuple[Tensor, list[DynamicsReport]]:
        """``forward`` with the number of iterations of this call (``None``: drawn in
        training, ``test_iterations or iterations`` at eval); at eval with ``halt`` and
        ``rollouts`` as set."""
        puzzle = puzzle.long()
        n = iterations or self.num_iterations()
        if self.training or diagnostics or self.rollouts == 1:
            return self._iterate(puzzle, n, diagnostics)
        batch, r = puzzle.shape[0], self.rollouts
        generator = torch.Generator(puzzle.device).manual_seed(0)  # the same answer every run
        logits, _ = self._iterate(puzzle.repeat(r, 1), n, False, generator)
        logits = logits.unflatten(0, (r, batch))  # (R, B, T, 81, 9)
        confidence = logits[:, :, -1].softmax(-1).amax(-1)  # (R, B, 81)
        blank = (puzzle == 0).to(confidence.dtype)
        score = (confidence * blank).sum(-1) / blank.sum(-1).clamp_min(1)
        best = score.argmax(0)  # (B,)
        return logits[best, torch.arange(batch, device=puzzle.device)], []

    def _iterate(
        self,
        puzzle: Tensor,
        n: int,
        diagnostics: bool,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, list[DynamicsReport]]:
        """``n`` iterations; with a ``generator``, the rollouts after the first ``B / rollouts``
        puzzles get initial-field noise."""
        graph = self.coupling_matrix()
        recall = self.embed(puzzle)  # (B, 81, D)
        batch = puzzle.shape[0]
        noisy = None
        if generator is not None:
            noisy = (torch.arange(batch, device=puzzle.device) >= batch // self.rollouts).float()
        halting = self.halt is not None and not self.training and not diagnostics
        active = torch.arange(batch, device=puzzle.device)
        stable = torch.zeros(batch, dtype=torch.long, device=puzzle.device)
        h, latest, digits = recall, None, None
        if self.training and self.detached_iterations is not None:
            with torch.no_grad():
                for _ in range(draw(self.detached_iterations)):
                    h = self._step(h, recall, puzzle, graph, None, None, False)[0]
        logits, reports = [], []
        for _ in range(n):
            report = None
            if active.numel() == batch:
                h, latest, report = self._step(
                    h, recall, puzzle, graph, noisy, generator, diagnostics
                )
            elif active.numel():  # only the puzzles that have not halted
                part = self._step(
                    h[active],
                    recall[active],
                    puzzle[active],
                    graph,
                    None if noisy is None else noisy[active],
                    generator,
                    False,
                )
                h, latest = h.index_copy(0, active, part[0]), latest.index_copy(0, active, part[1])
            logits.append(latest)
            if report is not None:
                reports.append(report)
            if halting:
                now = latest.argmax(-1)
                same = (
                    torch.zeros_like(stable, dtype=torch.bool)
                    if digits is None
                    else (now == digits).all(1)
                )
                stable, digits = torch.where(same, stable + 1, 0), now
                active = (stable < self.halt).nonzero().flatten()
        return torch.stack(logits, 1), reports

    def _step(self, h, recall, puzzle, graph, noisy, generator, diagnostics):
        """One iteration: configure, roll out, read ``T``, update the state. Returns the new
        state, its logits and, with diagnostics, a report."""
        u = h + recall
        noise = None
        if noisy is not None:
            shape = (u.shape[0], self.fields, CELLS)
            noise = torch.randn(shape, generator=generator, device=u.device, dtype=u.dtype)
            noise = self.noise * noise * noisy.view(-1, 1, 1)
        system, state = self.configure(u, puzzle, graph, noise)
        state, ledger = rollout(
            system, state, self.dt, self.steps, self.integrator, diagnostics=diagnostics
        )
        t = stress_energy(system, state.phi, state.pi).flatten(1, 2).transpose(1, 2)
        if self.readout == "asinh":
            t = fast_asinh(t)
        h = self.norm(h + self.update(torch.cat([t.to(u.dtype), u], -1)))
        report = None
        if ledger is not None:
            produced = ledger.entropy[-1] - ledger.entropy[0]
            report = DynamicsReport(produced, system, state, ledger=ledger)
        return h, self.out(h), report
