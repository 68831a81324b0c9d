"""Sudoku with a learned coupling graph: the shared-coupling system, the networks, the metrics,
the task, the DataModule, the callbacks and every Sudoku config through the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lit_metriplector.callbacks.coupling import coupling_image, recovery_metrics
from lit_metriplector.core import (
    CoupledSystem,
    DenseGraph,
    PartitionCoupling,
    SharedCoupling,
    State,
    rollout,
    stress_energy,
)
from lit_metriplector.core.coupling import couple, laplacian
from lit_metriplector.datamodules import SudokuDataModule
from lit_metriplector.datamodules.sudoku import (
    AugmentationSampler,
    AugmentedSudoku,
    parse_set,
    set_name,
)
from lit_metriplector.datasets.sudoku import generate, is_valid_solution, peers
from lit_metriplector.errors import ConfigError
from lit_metriplector.metrics import BoardExact, BoardValid, CellAccuracy
from lit_metriplector.metrics.sudoku import iteration_scores, predicted_board, sudoku_target
from lit_metriplector.modules import SudokuTask
from lit_metriplector.modules.base import count_parameters
from lit_metriplector.modules.sudoku import blank_cross_entropy
from lit_metriplector.networks import RecurrentRelationalNetwork, SudokuNetwork

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64

SOLUTION = "812753649943682175675491283154237896369845721287169534521974368438526917796318452"
PUZZLE = "800000000003600000070090200050007000000045700000100030001000068008500010090000400"


def digits(text: str) -> torch.Tensor:
    return torch.tensor([int(c) for c in text])


def random_coupled(batch=2, fields=4, sites=7, graphs=2, seed=0, branch="full"):
    g = torch.Generator().manual_seed(seed)
    kw = dict(dtype=F64, generator=g)
    raw = torch.rand(graphs, sites, sites, **kw)
    graph = (raw + raw.mT) * (1 - torch.eye(sites, dtype=F64))
    shape = (batch, fields, sites)
    system = CoupledSystem(
        DenseGraph(sites),
        torch.rand(shape, **kw),
        mass2=torch.rand(shape, **kw),
        source=torch.randn(shape, **kw),
        gamma=torch.rand(shape, **kw) if branch == "full" else None,
        graph=graph,
    )
    state = State(
        torch.randn(shape, **kw), torch.randn(shape, **kw), torch.rand(batch, sites, **kw)
    )
    return system, state


# -----------------------------------------------------------------------------
# the shared coupling


def test_coupled_system_equals_the_dense_graph_system():
    system, state = random_coupled()
    dense = system.dense()
    phi, pi = state.phi, state.pi
    assert torch.allclose(system.operator(phi), dense.operator(phi), atol=1e-12)
    assert torch.allclose(system.operator_diagonal(phi), dense.operator_diagonal(phi), atol=1e-12)
    assert torch.allclose(system.hamiltonian(phi, pi), dense.hamiltonian(phi, pi), atol=1e-12)
    assert torch.allclose(system.force(phi), dense.force(phi), atol=1e-12)
    reference = stress_energy(dense, phi, pi)
    assert torch.allclose(stress_energy(system, phi, pi), reference, atol=1e-12)
    # sum_x T00 = H
    t00 = stress_energy(system, phi, pi)[:, :, 0].flatten(1).sum(1)
    assert torch.allclose(t00, system.hamiltonian(phi, pi), atol=1e-12)


def test_coupled_operator_is_symmetric_psd_and_force_is_the_gradient():
    system, state = random_coupled(batch=1, fields=2, sites=6, graphs=2)
    system = system.replace(mass2=None, source=None)
    n = 2 * 6
    basis = torch.eye(n, dtype=F64).view(n, 1, 2, 6)
    matrix = torch.stack([system.operator(e)[0].flatten() for e in basis], 1)
    assert torch.allclose(matrix, matrix.T, atol=1e-12)
    assert torch.linalg.eigvalsh(matrix).min() >= -1e-12
    # force = dH/dphi by autograd
    phi = state.phi[:1].clone().requires_grad_()
    (grad,) = torch.autograd.grad(system.hamiltonian(phi).sum(), phi)
    assert torch.allclose(grad, system.force(phi.detach()), atol=1e-12)


def test_learned_coupling_is_symmetric_nonnegative_and_bounded():
    coupling = SharedCoupling(81, graphs=3, scale=4.0, gain=10.0)
    with torch.no_grad():
        coupling.logits.normal_(0, 1)
    k = coupling()
    assert k.shape == (3, 81, 81)
    assert torch.equal(k, k.mT) and (k >= 0).all() and (k.diagonal(dim1=1, dim2=2) == 0).all()
    assert (k.sum(-1) < 4.0).all()
    lap = laplacian(k.double())
    assert torch.allclose(lap, lap.mT) and torch.linalg.eigvalsh(lap).min() >= -1e-10
    x = torch.randn(2, 6, 81)
    expected = torch.einsum("hxy,bhcy->bhcx", k, x.view(2, 3, 2, 81)).reshape(2, 6, 81)
    assert torch.allclose(couple(k, x), expected, atol=1e-5)


def test_partition_coupling_is_bounded_and_a_hard_partition_is_its_cliques():
    from lit_metriplector.datasets.sudoku.structure import constraint_masks

    coupling = PartitionCoupling(81, graphs=3, groups=9, scale=4.0, gain=10.0)
    with torch.no_grad():
        coupling.logits.normal_(0, 1)
    k = coupling()
    assert k.shape == (3, 81, 81)
    assert torch.allclose(k, k.mT) and (k >= 0).all() and (k.diagonal(dim1=1, dim2=2) == 0).all()
    assert (k.sum(-1) < 4.0).all()
    assert torch.linalg.eigvalsh(laplacian(k.double())).min() >= -1e-10
    # labels that pick a row, a column and a box per head give exactly those graphs, each cell
    # coupled to its 8 partners at scale / 9
    masks = constraint_masks()
    cells = torch.arange(81)
    labels = torch.stack([cells // 9, cells % 9, (cells // 27) * 3 + (cells % 9) // 3])
    with torch.no_grad():
        coupling.logits.copy_(torch.nn.functional.one_hot(labels, 9) * 10.0)  # logits 100
    k = coupling()
    for head, kind in enumerate(("rows", "columns", "boxes")):
        assert torch.allclose(k[head], masks[kind].float() * 4.0 / 9, atol=1e-6)


def test_partition_units_names_the_groups_that_are_units():
    from lit_metriplector.datasets.sudoku.structure import UNITS
    from lit_metriplector.metrics import partition_units

    names = [f"{kind}{i}" for kind in ("row", "column", "box") for i in range(9)]
    cells = torch.arange(81)
    rows_then_boxes = torch.where(cells < 27, cells // 9, 3 + (cells % 9) // 3 + 3 * (cells // 54))
    labels = torch.stack([cells % 9, rows_then_boxes])
    found = partition_units(labels, torch.from_numpy(UNITS), names)
    assert found[0] == [f"column{i}" for i in range(9)]
    # the first band as rows, the others as boxes (a partition may mix kinds)
    assert found[1] == ["row0", "row1", "row2", *(f"box{i}" for i in range(3, 9))]
    # a group that is no unit: the first two rows' cells in one group
    labels[0] = (cells // 9).clamp_min(1)
    assert partition_units(labels[:1], torch.from_numpy(UNITS), names)[0][0] is None


def test_head_heterogeneity_is_zero_for_pure_kinds_and_not_for_mixed_heads():
    """Heads of rows, columns and boxes meet each other alike (0); heads that swap columns and
    boxes stack by stack, as trained heads did, do not. The penalty trains the labels."""
    from lit_metriplector.core.coupling import head_heterogeneity
    from lit_metriplector.datasets.sudoku.structure import UNITS

    def head(units):
        p = torch.zeros(81, 9, dtype=F64)
        for group, unit in enumerate(units):
            p[torch.from_numpy(UNITS[unit]), group] = 1
        return p

    rows, columns, boxes = range(9), range(9, 18), range(18, 27)

    def stack(kind, s):  # the three columns or boxes of stack s
        return (
            [9 + 3 * s + i for i in range(3)]
            if kind == "columns"
            else [18 + s + 3 * b for b in range(3)]
        )

    pure = torch.stack([head(rows), head(columns), head(boxes)])
    mixed = torch.stack(
        [
            head(rows),
            head(stack("columns", 0) + stack("boxes", 1) + stack("columns", 2)),
            head(stack("boxes", 0) + stack("columns", 1) + stack("boxes", 2)),
        ]
    )
    assert float(head_heterogeneity(pure)) < 1e-12
    assert float(head_heterogeneity(mixed)) > 0.01
    net = small_net(graph="partition", graphs=2, homogeneity=10.0)
    assert float(small_net().penalty()) == 0.0
    net.penalty().backward()
    assert net.coupling.logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="homogeneity"):
        small_net(homogeneity=1.0)  # the learned full graph has no partition heads


def test_partition_graph_trains_and_sees_no_structure(monkeypatch):
    import lit_metriplector.datasets.sudoku.structure as structure

    def forbidden(*args, **kwargs):
        raise AssertionError("the network read the constraint graph")

    monkeypatch.setattr(structure, "peers", forbidden)
    monkeypatch.setattr(structure, "constraint_masks", forbidden)
    torch.manual_seed(0)
    net = small_net(graph="partition", groups=9)
    assert isinstance(net.coupling, PartitionCoupling)
    p, s = puzzles(2)
    loss = blank_cross_entropy(net(p)[0], sudoku_target(p, s))
    loss.backward()
    assert net.coupling.logits.grad.abs().sum() > 0


def test_detached_iterations_continue_the_rollout_without_gradients():
    torch.manual_seed(0)
    net = small_net(train_iterations=(2, 2), detached_iterations=(3, 3))
    p, s = puzzles(2)
    trained, _ = net(p)  # 3 iterations without gradients, then 2 with
    assert trained.shape[1] == 2
    with torch.no_grad():
        reference = net.eval().iterate(p, 5)[0]
    assert torch.allclose(trained.detach(), reference[:, 3:], atol=1e-5)
    net.train()
    # only the trained iterations carry gradients: the loss reaches the weights through them
    blank_cross_entropy(net(p)[0], sudoku_target(p, s)).backward()
    assert all(w.grad is not None for w in (net.out.weight, net.embed.weight))
    with pytest.raises(ValueError, match="detached_iterations"):
        small_net(detached_iterations=(2, 1))


def test_dynamics_on_the_shared_coupling_conserve_energy():
    # dE/dt = 0 and dS/dt >= 0 on the vector field (the metriplectic identities)
    system, state = random_coupled(seed=1)
    leaves = State(*(t.clone().requires_grad_() for t in state))
    grad_e = State(*torch.autograd.grad(system.energy(leaves).sum(), list(leaves)))
    for a, b in zip(grad_e, system.energy_gradient(state), strict=True):
        assert torch.allclose(a, b, atol=1e-10)
    z_dot = system.vector_field(state)
    de = sum((a * b).flatten(1).sum(1) for a, b in zip(grad_e, z_dot, strict=True))
    assert de.abs().max() < 1e-10
    assert (z_dot.s >= 0).all()
    # strang keeps the ledger E to O(dt^2) without drift, friction included; euler drifts
    drifts = {}
    for method in ("strang", "euler"):
        _, ledger = rollout(system, state, 0.05, 200, method, diagnostics=True)
        drifts[method] = float(ledger.relative_drift().max())
        assert (ledger.entropy_production() >= -1e-12).all()
    assert drifts["strang"] < 5e-3 and drifts["euler"] > 100 * drifts["strang"]
    _, half = rollout(system, state, 0.025, 400, "strang", diagnostics=True)
    assert float(half.relative_drift().max()) < 0.3 * drifts["strang"]  # O(dt^2)


def test_coupled_system_rejects_mobility_and_bad_graphs():
    system, _ = random_coupled()
    with pytest.raises(ValueError, match="mobility"):
        system.replace(mobility=torch.ones(1))
    with pytest.raises(ValueError, match="graph"):
        system.replace(graph=torch.zeros(2, 5, 5, dtype=F64))


# -----------------------------------------------------------------------------
# networks


def small_net(**kw):
    defaults = dict(features=16, fields=8, graphs=2, iterations=3, train_iterations=(2, 4))
    return SudokuNetwork(**{**defaults, **kw})


def puzzles(count=4, seed=0):
    p, s = generate(count, (30, 40), seed)
    return torch.from_numpy(p).long(), torch.from_numpy(s).long()


def twin_nets(**kw):
    """Two networks with the same weights, one with the test-time options ``kw``."""
    torch.manual_seed(0)
    plain = small_net().eval()
    torch.manual_seed(0)
    return plain, small_net(**kw).eval()


def test_halting_keeps_each_puzzles_logits_once_its_digits_settle():
    plain, halting = twin_nets(halt=2)
    p, _ = puzzles(6)
    with torch.no_grad():
        full, _ = plain.iterate(p, 16)
        out, _ = halting.iterate(p, 16)
    for b in range(len(p)):
        digits = full[b].argmax(-1)  # (T, 81)
        same = (digits[1:] == digits[:-1]).all(1).tolist()
        stop = next((t + 1 for t in range(1, len(same)) if same[t] and same[t - 1]), None)
        if stop is None:  # never settled: every iteration ran
            assert torch.equal(out[b], full[b])
            continue
        assert torch.equal(out[b, : stop + 1], full[b, : stop + 1])  # until it halted
        assert (out[b, stop + 1 :] == out[b, stop]).all()  # then its logits are kept
    _, never = twin_nets(halt=16)
    with torch.no_grad():
        assert torch.equal(never.iterate(p, 16)[0], full)  # no halt before the end: the same


def test_rollouts_pick_the_most_confident_and_the_first_is_the_plain_one():
    plain, breadth = twin_nets(rollouts=3, noise=1.0)
    p, _ = puzzles(5)
    with torch.no_grad():
        out, _ = breadth.iterate(p, 4)
        again, _ = breadth.iterate(p, 4)
        first, _ = plain.iterate(p, 4)
        breadth.rollouts = 1
        assert torch.equal(breadth.iterate(p, 4)[0], first)  # one rollout: the plain network
        breadth.rollouts = 3
        every, _ = breadth._iterate(p.repeat(3, 1), 4, False, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded: the same answer every run
    every = every.unflatten(0, (3, len(p)))
    assert torch.allclose(every[0], first)  # the first rollout has no noise
    assert not torch.allclose(every[1], first)
    blank = (p == 0).float()
    score = (every[:, :, -1].softmax(-1).amax(-1) * blank).sum(-1) / blank.sum(-1)
    chosen = every[score.argmax(0), torch.arange(len(p))]
    assert torch.equal(out, chosen)
    with pytest.raises(ValueError, match="rollouts"):
        small_net(rollouts=0)


def test_breadth_never_reads_the_rules(monkeypatch):
    """Rollouts are chosen by the network's own confidence: with every piece of Sudoku
    knowledge the package has made to fail, breadth still runs and picks the same answer."""
    from lit_metriplector.datasets.sudoku import solver, structure

    _, breadth = twin_nets(rollouts=3, noise=1.0)
    p, _ = puzzles(4)
    with torch.no_grad():
        expected, _ = breadth.iterate(p, 3)

    def forbidden(*args, **kwargs):
        raise AssertionError("breadth read the Sudoku rules")

    for module in (structure, solver):
        for name in dir(module):
            if callable(getattr(module, name)) and not name.startswith("__"):
                monkeypatch.setattr(module, name, forbidden)
    with torch.no_grad():
        assert torch.equal(breadth.iterate(p, 3)[0], expected)


def test_compiled_step_gives_the_eager_logits_and_gradients():
    """``compile`` compiles one iteration: the same logits and gradients as the eager network
    over a drawn depth, and halting (a batch that shrinks) still runs."""
    torch.manual_seed(0)
    eager = small_net().double()
    fused = small_net().double()
    fused.load_state_dict(eager.state_dict())
    fused.compile()
    p, _ = puzzles(3)
    for net in (eager, fused):
        torch.manual_seed(1)  # the same drawn depth
        net(p)[0].square().mean().backward()
    assert torch.allclose(fused.eval()(p)[0], eager.eval()(p)[0], atol=1e-10)
    for (name, a), b in zip(eager.named_parameters(), fused.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-8, atol=1e-12), name
    fused.halt = eager.halt = 1
    assert torch.allclose(fused.iterate(p, 6)[0], eager.iterate(p, 6)[0], atol=1e-10)


def test_network_shapes_and_iterations():
    torch.manual_seed(0)  # the drift bound below holds for typical weights, not for any
    net = small_net().eval()
    p, _ = puzzles(3)
    logits, reports = net(p)
    assert logits.shape == (3, 3, 81, 9) and reports == []
    assert net.iterate(p, 7)[0].shape == (3, 7, 81, 9)
    net.test_iterations = 5
    assert net(p)[0].shape == (3, 5, 81, 9)
    net.train()
    torch.manual_seed(0)
    depths = {net(p)[0].shape[1] for _ in range(12)}
    assert depths <= {2, 3, 4} and len(depths) > 1
    # one report per iteration, with energy and entropy ledgers
    net.eval()
    _, reports = net.iterate(p, 2, diagnostics=True)
    assert len(reports) == 2
    for r in reports:
        assert r.ledger.energy.shape == (net.steps + 1, 3)
        assert (r.ledger.entropy_production() >= -1e-6).all()
        assert float(r.ledger.relative_drift().max()) < 0.1


def test_graph_option_and_no_structural_injection(monkeypatch):
    p, _ = puzzles(2)
    given = small_net(graph="given")
    assert given.coupling is None
    k = given.coupling_matrix()
    assert torch.equal(k[0] > 0, peers())
    # the learned network never reads the true graph: building and running it works with the
    # structure functions gone
    import lit_metriplector.datasets.sudoku.structure as structure

    def forbidden(*args, **kwargs):
        raise AssertionError("the learned network read the constraint graph")

    monkeypatch.setattr(structure, "peers", forbidden)
    monkeypatch.setattr(structure, "constraint_masks", forbidden)
    torch.manual_seed(0)
    net = small_net().eval()
    logits, _ = net(p)
    # ... and nothing but the coupling tells cells apart: relabelling the cells (in the input
    # and in the coupling's parameters) relabels the output
    perm = torch.randperm(81)
    with torch.no_grad():
        permuted = small_net().eval()
        permuted.load_state_dict(net.state_dict())
        permuted.coupling.logits.copy_(net.coupling.logits[:, perm][:, :, perm])
        assert torch.allclose(permuted(p[:, perm])[0], logits[:, :, perm], atol=1e-5)
    # the same seed gives the same network with or without the true graph around
    monkeypatch.undo()
    torch.manual_seed(0)
    reference = small_net()
    for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_rrn_matches_the_parameters_and_shapes():
    ours = count_parameters(SudokuNetwork())
    theirs = count_parameters(RecurrentRelationalNetwork())
    assert abs(theirs / ours - 1) < 0.05
    net = RecurrentRelationalNetwork(width=12, embedding=4, iterations=3).eval()
    p, _ = puzzles(2)
    logits, reports = net(p)
    assert logits.shape == (2, 3, 81, 9) and reports == []
    assert net.iterate(p, 5)[0].shape == (2, 5, 81, 9)


# -----------------------------------------------------------------------------
# metrics and loss


def one_hot_logits(board: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot((board - 1).clamp_min(0), 9).float()


def test_metrics_on_hand_made_boards():
    puzzle, solution = digits(PUZZLE), digits(SOLUTION)
    assert is_valid_solution(solution, puzzle)
    # a board with two blanks swapped in one row: exact fails, validity too
    wrong = solution.clone()
    blanks = (puzzle == 0).nonzero().flatten()
    i, j = next((a, b) for a in blanks for b in blanks if a < b and a // 9 == b // 9)
    wrong[i], wrong[j] = solution[j], solution[i]
    # another valid grid that keeps no givens: a relabelled solution on an empty puzzle
    relabel = torch.tensor([0, 2, 3, 4, 5, 6, 7, 8, 9, 1])
    other = relabel[solution]
    empty = torch.zeros(81, dtype=torch.long)
    logits = torch.stack([one_hot_logits(b) for b in (solution, wrong, other)])
    target = sudoku_target(torch.stack([puzzle, puzzle, empty]), solution.expand(3, -1))
    cell, exact, valid = CellAccuracy(), BoardExact(), BoardValid()
    for m in (cell, exact, valid):
        m.update(logits, target)
    blanks_total = 2 * int((puzzle == 0).sum()) + 81
    assert float(exact.compute()) == pytest.approx(1 / 3)
    assert float(valid.compute()) == pytest.approx(2 / 3)  # the relabelled grid is valid
    assert float(cell.compute()) == pytest.approx((blanks_total - 2 - 81) / blanks_total)
    # per-iteration logits: the last iteration is scored
    stacked = torch.stack([torch.zeros_like(logits), logits], 1)
    assert float(BoardExact()(stacked, target)) == pytest.approx(1 / 3)
    # givens are kept whatever the logits say there
    board = predicted_board(torch.zeros(1, 81, 9), puzzle[None])
    assert torch.equal(board[0][puzzle > 0], puzzle[puzzle > 0])
    scores = iteration_scores(stacked, target[:, 0], target[:, 1])
    assert scores["exact"].tolist() == pytest.approx([0.0, 1 / 3])


def test_loss_counts_blank_cells_of_every_iteration():
    puzzle, solution = digits(PUZZLE)[None], digits(SOLUTION)[None]
    target = sudoku_target(puzzle, solution)
    perfect = 50 * one_hot_logits(solution)
    flat = torch.zeros_like(perfect)
    loss = blank_cross_entropy(torch.stack([perfect, flat], 1), target)
    assert float(loss) == pytest.approx(np.log(9) / 2, rel=1e-4)
    # givens do not count: wrong logits on given cells change nothing
    noisy = perfect.clone()
    noisy[0, puzzle[0] > 0] = torch.randn(int((puzzle > 0).sum()), 9)
    assert float(blank_cross_entropy(noisy[:, None], target)) < 1e-6


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    p, s = puzzles(16, seed=5)
    target = sudoku_target(p, s)
    net = small_net(train_iterations=None, iterations=2)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = blank_cross_entropy(net(p)[0], target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0]


# -----------------------------------------------------------------------------
# data


def test_set_specs():
    assert parse_set("36") == ((36, 36), "any")
    assert parse_set("22-25:minimal") == ((22, 25), "minimal")
    assert parse_set("22-25:hard") == ((22, 25), "hard")
    assert set_name("22-25:minimal") == "22-25_minimal"
    for bad in ("12", "30-20", "abc", "30:easy", "30:"):
        with pytest.raises(ConfigError):
            parse_set(bad)


def test_datamodule_sets_names_and_augmentation(tmp_path):
    file = tmp_path / "hard.txt"
    file.write_text(PUZZLE + "\n")
    dm = SudokuDataModule(
        train_size=8,
        val_size=4,
        test_sets=["36", "22-25:minimal"],
        test_size=3,
        test_files=[str(file)],
        batch_size=4,
        cache_dir=str(tmp_path / "cache"),
    )
    assert dm.test_names == ["36", "22-25_minimal", "hard"]
    dm.prepare_data()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 5  # train, val, 2 tests, predict
    dm.setup("fit")
    dm.setup("test")
    givens = [(d.puzzles > 0).sum(1) for d in dm.test_sets]
    assert (givens[0] == 36).all() and ((givens[1] >= 22) & (givens[1] <= 25)).all()
    assert torch.equal(dm.test_sets[2].solutions[0], digits(SOLUTION))
    batch = next(iter(dm.train_dataloader()))
    assert batch["input"].shape == (4, 81)
    assert is_valid_solution(batch["target"], batch["input"]).all()
    # relabelled draws: same blanks as the stored puzzles, different digits
    keys = list(AugmentationSampler(dm.train_set, seed=0))
    items = [dm.train_set[k] for k in keys]
    stored = [dm.train_set.data[k % 8] for k in keys]
    assert all(
        torch.equal(a["input"] > 0, b["input"] > 0) for a, b in zip(items, stored, strict=True)
    )
    assert any(
        not torch.equal(a["target"], b["target"]) for a, b in zip(items, stored, strict=True)
    )
    # the same keys give the same transforms; the next epoch different ones
    again = AugmentationSampler(dm.train_set, seed=0)
    assert list(again) == keys
    again.set_epoch(1)
    assert list(again) != keys
    # resuming mid-epoch continues the same keys
    resumed = AugmentationSampler(dm.train_set, seed=0, resume=(0, 3))
    assert list(resumed) == keys[3:]


def test_curriculum_draws_each_set_from_its_epoch():
    """``train_from_epoch``: an epoch draws only the sets started by then, each of their puzzles
    equally often (to one), keeps its length, and resumes mid-epoch with the same keys."""
    p, s = puzzles(10)
    first = np.array([0] * 4 + [1] * 3 + [3] * 3)  # three sets entering at epochs 0, 1 and 3
    data = AugmentedSudoku(p.numpy(), s.numpy(), 0, first, relabel=True)
    sampler = AugmentationSampler(data, seed=0)
    for epoch, pool in ((0, range(4)), (1, range(7)), (2, range(7)), (3, range(10))):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        drawn = np.bincount([k % 10 for k in keys], minlength=10)
        assert len(keys) == 10 and set(np.flatnonzero(drawn)) == set(pool)
        assert drawn[list(pool)].max() - drawn[list(pool)].min() <= 1
    sampler.set_epoch(1)
    resumed = AugmentationSampler(data, seed=0, resume=(1, 4))
    assert list(resumed) == list(sampler)[4:]
    with pytest.raises(ConfigError, match="train_from_epoch"):
        SudokuDataModule(train_sets=["22-44", "22-25:hard"], train_from_epoch=[1, 2])
    with pytest.raises(ConfigError, match="train_from_epoch"):
        SudokuDataModule(train_sets=["22-44"], train_from_epoch=[0, 2])


# -----------------------------------------------------------------------------
# callbacks, task pictures


def test_coupling_scores_and_picture():
    truth = peers().float() * 0.05
    metrics = recovery_metrics(torch.stack([truth, truth]))
    assert metrics["coupling/auc"] == 1.0 and metrics["coupling/top20_precision"] == 1.0
    from lit_metriplector.datasets.sudoku import constraint_masks

    kinds = constraint_masks()
    split = torch.stack([kinds[k].float() for k in ("rows", "columns", "boxes")])
    metrics = recovery_metrics(split)
    assert metrics["coupling/kinds_separated"] == 1.0
    assert [metrics[f"coupling/head{h}/kind"] for h in range(3)] == [0.0, 1.0, 2.0]
    assert metrics["coupling/auc"] == 1.0
    assert recovery_metrics(torch.stack([truth]))["coupling/kinds_separated"] == 0.0
    image = coupling_image(split, zoom=1)
    assert image.shape[0] == 3 and image.shape[1] == 81 and image.min() >= 0 and image.max() <= 1


def test_monitors_log_energy_entropy_and_coupling(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from lit_metriplector.callbacks import CouplingMonitor, EnergyMonitor, EntropyMonitor

    p, s = puzzles(8)
    loader = torch.utils.data.DataLoader(
        [{"input": a, "target": b} for a, b in zip(p, s, strict=True)], batch_size=4
    )
    task = SudokuTask(small_net(iterations=2))
    trainer = L.Trainer(
        max_steps=2,
        logger=CSVLogger(tmp_path),
        callbacks=[EnergyMonitor(1, 2), EntropyMonitor(1, 2), CouplingMonitor(1)],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(task, loader)
    header = next((tmp_path / "lightning_logs").rglob("metrics.csv")).read_text().splitlines()[0]
    for key in (
        "physics/layer0/energy_drift",  # one "layer" per iteration of the rollout
        "physics/layer1/entropy_produced",
        "physics/entropy_violations",
        "coupling/auc",
        "coupling/head1/auc_boxes",
    ):
        assert key in header.split(","), key


def test_render_prediction():
    task = SudokuTask(small_net())
    p, s = puzzles(2)
    logits = task.network.eval()(p)[0]
    images = task.render_prediction({"input": p, "target": s}, logits)
    assert images.dtype == torch.uint8 and images.shape[:2] == (2, 3)


# -----------------------------------------------------------------------------
# the configs through the CLI

TINY = {
    "sudoku": [
        "--model.init_args.network.init_args.features=8",
        "--model.init_args.network.init_args.fields=4",
        "--model.init_args.network.init_args.graphs=2",
        "--model.init_args.network.init_args.iterations=2",
        "--model.init_args.network.init_args.train_iterations=[1, 2]",
    ],
    "sudoku_rrn": [
        "--model.init_args.network.init_args.width=8",
        "--model.init_args.network.init_args.embedding=4",
        "--model.init_args.network.init_args.iterations=2",
        "--model.init_args.network.init_args.train_iterations=[1, 2]",
    ],
}
TINY["sudoku_gpu"] = TINY["sudoku"]
TINY_DATA = [
    "--data.init_args.train_size=8",
    "--data.init_args.val_size=4",
    "--data.init_args.test_size=2",
    "--data.init_args.test_sets=[36, '22-25:minimal']",
    "--data.init_args.predict_size=2",
    "--data.init_args.batch_size=2",
    "--data.init_args.cache_dir=null",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TINY))
def test_config_fast_dev_run(name, tmp_path, monkeypatch):
    from lit_metriplector.cli import main

    monkeypatch.chdir(tmp_path)
    config = ROOT / "configs" / f"{name}.yaml"
    cli = main(
        ["fit", "--config", str(config), *TINY[name], *TINY_DATA]
        + ["--trainer.fast_dev_run=1", "--trainer.enable_progress_bar=false"]
    )
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert {"test/36/exact", "test/22-25_minimal/valid"} <= set(cli.trainer.callback_metrics)


@pytest.mark.filterwarnings("ignore:predict runs on the network's initial")
def test_predict_writes_boards(tmp_path, monkeypatch):
    from lit_metriplector.cli import main

    monkeypatch.chdir(tmp_path)
    file = tmp_path / "hard.txt"
    file.write_text(PUZZLE + "\n")
    main(
        ["predict", "--config", str(ROOT / "configs" / "sudoku.yaml"), *TINY["sudoku"]]
        + TINY_DATA
        + [f"--data.init_args.predict_files=[{file}]", "--trainer.logger=false", "--untrained=true"]
        + ["--trainer.enable_progress_bar=false"]
    )
    out = tmp_path / "predictions" / "sudoku" / "hard"
    assert len(list(out.glob("*.png"))) == 1
    text = (out / "0000.txt").read_text()
    assert "puzzle     " + PUZZLE in text and "exact=" in text
