"""DeepThinkingNetwork: shapes, eval iterations that grow with the maze, the progressive-loss
training forward, gradients, a tiny overfit, and a fit through the CLI."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lit_metriplector.cli import main
from lit_metriplector.datasets.mazes import make_example
from lit_metriplector.networks import DeepThinkingNetwork

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: a second thread only adds synchronisation (and, on a busy machine,
    waits of hundreds of milliseconds per call)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mazes(cells: int, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    examples = [make_example(cells, seed + i) for i in range(count)]
    x = torch.from_numpy(np.stack([e[0] for e in examples]))
    y = torch.from_numpy(np.stack([e[1] for e in examples]))
    return x, y


def count_steps(net: DeepThinkingNetwork) -> list[int]:
    """A list whose length counts applications of the recurrent block."""
    calls: list[int] = []
    net.recur.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.mark.parametrize("cells", [3, 7, 19])
def test_output_shape(cells):
    torch.manual_seed(0)
    net = DeepThinkingNetwork(width=4, iterations=2).eval()
    x, _ = mazes(cells, 2)
    with torch.no_grad():
        logits, reports = net(x)
    assert logits.shape == (2, 2 * cells + 1, 2 * cells + 1)
    assert reports == []
    assert torch.isfinite(logits).all()


def test_eval_iterations_grow_with_the_maze():
    net = DeepThinkingNetwork(width=4, iterations=20, train_size=15).eval()
    assert [net.eval_iterations(s, s) for s in (7, 15, 39, 99)] == [20, 20, 52, 132]
    assert DeepThinkingNetwork(max_iterations=100).eval_iterations(99, 99) == 100
    assert DeepThinkingNetwork(test_iterations=7).eval_iterations(99, 99) == 7

    net = DeepThinkingNetwork(width=4, iterations=3, train_size=7).eval()
    calls = count_steps(net)
    with torch.no_grad():
        for cells, expected in ((3, 3), (7, 6), (13, 12)):
            calls.clear()
            net(mazes(cells, 1)[0])
            assert len(calls) == expected, cells

    # In training the depth never exceeds `iterations`, whatever the maze size.
    net.train()
    for _ in range(10):
        calls.clear()
        net(mazes(13, 1)[0])
        assert 1 <= len(calls) <= 3


def test_training_forward_is_seeded():
    net = DeepThinkingNetwork(width=4, iterations=4).train()
    x, _ = mazes(3, 2)

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [net(x)[0].detach() for _ in range(6)]

    first, second = run(1), run(1)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Six draws with alpha = 0.5 do not all take the same branch and depth.
    assert any(not torch.equal(first[0], other) for other in first[1:])


def test_progressive_branch_matches_alpha():
    x, _ = mazes(3, 1)
    full = DeepThinkingNetwork(width=4, iterations=5, alpha=0.0).train()
    calls = count_steps(full)
    for _ in range(5):
        calls.clear()
        full(x)
        assert len(calls) == 5
    prog = DeepThinkingNetwork(width=4, iterations=5, alpha=1.0).train()
    calls = count_steps(prog)
    torch.manual_seed(0)
    depths = set()
    for _ in range(30):
        calls.clear()
        prog(x)
        depths.add(len(calls))  # n (no grad) + k (grad) steps, 1 <= n + k <= iterations
    assert depths <= set(range(1, 6)) and len(depths) > 1


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = DeepThinkingNetwork(width=4, iterations=3, alpha=0.0).train()
    x, y = mazes(3, 2)
    F.binary_cross_entropy_with_logits(net(x)[0], y).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_progressive_output_detaches_the_warm_up():
    """After n > 0 warm-up steps (without grad) the projection gets no gradient, as in the
    paper's code; with n = 0 it does. Both happen within a few seeded draws."""
    net = DeepThinkingNetwork(width=4, iterations=6, alpha=1.0).train()
    x, y = mazes(3, 1)
    projection_grads = set()
    for seed in range(20):
        net.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        F.binary_cross_entropy_with_logits(net(x)[0], y).backward()
        projection_grads.add(net.projection[0].weight.grad is not None)
        assert net.recur.recall.weight.grad is not None
        assert net.head[-1].weight.grad is not None
    assert projection_grads == {True, False}


def test_overfits_four_mazes():
    torch.manual_seed(0)
    net = DeepThinkingNetwork(width=16, iterations=4, alpha=0.0).train()
    x, y = mazes(2, 4)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = F.binary_cross_entropy_with_logits(net(x)[0], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"blocks": -1},
        {"iterations": 0},
        {"test_iterations": 0},
        {"train_size": 0},
        {"iterations": 20, "max_iterations": 10},
        {"alpha": 1.5},
        {"alpha": -0.1},
    ],
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        DeepThinkingNetwork(**kwargs)


def test_fits_through_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    configs = ROOT / "configs"
    cli = main(
        [
            "fit",
            "--config",
            str(configs / "maze.yaml"),
            "--config",
            str(configs / "trainer" / "debug.yaml"),
            "--model.init_args.network=lit_metriplector.networks.DeepThinkingNetwork",
            "--model.init_args.network.init_args.width=8",
            "--model.init_args.network.init_args.iterations=3",
            "--data.init_args.train_cells=3",
            "--data.init_args.val_cells=3",
            "--data.init_args.test_cells=[4]",
            "--data.init_args.batch_size=4",
            "--trainer.enable_progress_bar=false",
        ]
    )
    assert isinstance(cli.model.network, DeepThinkingNetwork)
    assert cli.model.network.iterations == 3
    assert cli.trainer.global_step == 2
    assert cli.trainer.state.finished
