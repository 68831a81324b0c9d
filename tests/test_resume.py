"""A resumed run is bit for bit the uninterrupted one: the same loss at every step and the same
final weights, whether the run was stopped mid-epoch or at an epoch's end, with or without worker
processes, for the mazes and the byte LM; and through the CLI."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch

from lit_metriplector.cli import main
from lit_metriplector.datamodules.maze import MazeDataModule
from lit_metriplector.datamodules.text import ByteTextDataModule
from lit_metriplector.modules import LMTask, MazeTask
from lit_metriplector.networks import MazeNetwork, MetriplectorLM
from tests.recording import fit_losses

# configs/maze.yaml shrunk: 10 mazes of 3x3 cells in batches of 4 make 3 batches an epoch (the
# last one short); checkpoints after every step, all kept, named by step.
CONFIG = """\
seed_everything: 0
model:
  class_path: MazeTask
  init_args:
    network:
      class_path: lit_metriplector.networks.MazeNetwork
      init_args: {{features: 8, fields: 1}}
    optimizer:
      class_path: torch.optim.AdamW
      init_args: {{lr: 0.01}}
data:
  class_path: MazeDataModule
  init_args:
    {{train_cells: 3, val_cells: 3, test_cells: [4], train_size: 10, val_size: 4, batch_size: 4}}
trainer:
  default_root_dir: {root}
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: lightning.pytorch.callbacks.ModelCheckpoint
      init_args:
        {{dirpath: {root}/ckpt, filename: "{{step}}", save_top_k: -1, save_last: true,
         every_n_train_steps: 1}}
    - class_path: EnergyMonitor
      init_args: {{every_n_steps: 1, probe_size: 2}}
    - class_path: EntropyMonitor
      init_args: {{every_n_steps: 2, probe_size: 2}}
    - class_path: FieldImageLogger
      init_args: {{every_n_steps: 2}}
"""
BATCHES_PER_EPOCH = 3
UNINTERRUPTED_STEPS = 8

# Every test fits (and resumes) end to end: slow. Lightning's advice to use more workers, and its
# warning on resuming mid-epoch from a dataloader without state_dict (the datamodule holds that
# state); the resumed run's checkpoints joining the first run's.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    # Tensors this small gain nothing from threads, which only contend with other processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fit(root: Path, steps: int, *args: str) -> Path:
    """Fit through the CLI until global step `steps`; returns the checkpoint folder."""
    root.mkdir(parents=True, exist_ok=True)
    config = root / "maze.yaml"
    config.write_text(CONFIG.format(root=root))
    main(["fit", "--config", str(config), "--trainer.max_steps", str(steps), *args])
    return root / "ckpt"


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoints of an uninterrupted run, one per step."""
    return fit(tmp_path_factory.mktemp("uninterrupted"), UNINTERRUPTED_STEPS)


@pytest.mark.parametrize(
    "steps",
    [4, 6, 8],
    ids=["from-mid-epoch-0-across", "from-end-of-epoch-0", "from-mid-epoch-1-across"],
)
def test_resumed_run_ends_with_the_uninterrupted_model(
    tmp_path: Path, uninterrupted: Path, steps: int
) -> None:
    half = fit(tmp_path, steps // 2)
    # Seeded differently: a resumed run owes nothing to the global seed (Lightning does not
    # checkpoint RNG states), and a run that silently started over would not match. Seed and
    # max_steps differ from the first part's recipe on purpose, hence --allow_recipe_change.
    resume = ["--ckpt_path", str(half / "last.ckpt"), "--allow_recipe_change=true"]
    ckpt = fit(tmp_path, steps, *resume, "--seed_everything", "1")
    resumed, expected = load(ckpt / "last.ckpt"), load(uninterrupted / f"step={steps}.ckpt")
    assert resumed["global_step"] == expected["global_step"] == steps
    epoch, batches = divmod(steps, BATCHES_PER_EPOCH)
    state = resumed["MazeDataModule"]
    assert (state["epoch"], state["samples"]) == (epoch, 4 * batches)
    assert resumed["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(resumed["state_dict"][name], value), name
    (moments,) = (opt["state"] for opt in resumed["optimizer_states"])
    (expected_moments,) = (opt["state"] for opt in expected["optimizer_states"])
    for index, state in expected_moments.items():
        for key, value in state.items():
            assert torch.equal(moments[index][key], value), (index, key)


def test_cli_checkpoint_loads_without_the_config(uninterrupted: Path) -> None:
    # The CLI saves the network's class_path and init_args with the weights.
    path = uninterrupted / f"step={UNINTERRUPTED_STEPS}.ckpt"
    task = MazeTask.load_from_checkpoint(path, map_location="cpu")
    assert type(task.network).__name__ == "MazeNetwork"
    for name, value in load(path)["state_dict"].items():
        assert torch.equal(task.state_dict()[name], value), name


# -----------------------------------------------------------------------------
# Step by step: stopped by max_steps wherever it is and checkpointed as the shipped configs do
# (one ModelCheckpoint(save_last=True)), then resumed from last.ckpt.

TOTAL_STEPS = 8
Run = Callable[[], tuple[L.LightningModule, L.LightningDataModule]]


def adamw(parameters: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameters, lr=0.01)


def maze_run(num_workers: int = 0) -> Run:
    """A maze task: 10 mazes in batches of 4 make 3 batches an epoch, the last one short."""

    def make() -> tuple[L.LightningModule, L.LightningDataModule]:
        task = MazeTask(MazeNetwork(features=8, fields=1), optimizer=adamw)
        data = MazeDataModule(
            train_cells=3,
            val_cells=3,
            test_cells=[3],
            train_size=10,
            val_size=4,
            batch_size=4,
            num_workers=num_workers,
        )
        return task, data

    return make


def lm_run(tmp_path: Path, num_workers: int = 0) -> Run:
    """A byte LM with dropout (so the resumed run needs the RNG state too): 18 windows in
    batches of 4 make 5 batches an epoch, the last one short."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog; " * 70)

    def make() -> tuple[L.LightningModule, L.LightningDataModule]:
        network = MetriplectorLM(width=16, layers=1, modes=4, dropout=0.1)
        task = LMTask(network, optimizer=adamw, max_new_bytes=4)
        data = ByteTextDataModule(
            str(corpus),
            seq_len=8,
            batch_size=4,
            samples_per_epoch=18,
            val_windows=2,
            test_windows=2,
            num_workers=num_workers,
            cache_dir=str(tmp_path / "cache"),
        )
        return task, data

    return make


def resume_exactly(root: Path, make: Run, stop: int, **trainer_kwargs: Any) -> dict[str, Any]:
    """Run TOTAL_STEPS steps uninterrupted, and again stopped at `stop` and resumed from its
    last.ckpt; asserts that every step's loss and the final weights are equal, and returns the
    checkpoint resumed from."""
    L.seed_everything(0, verbose=False)
    model, data = make()
    expected = fit_losses(model, data, root / "whole", TOTAL_STEPS, **trainer_kwargs)
    L.seed_everything(0, verbose=False)
    first = fit_losses(*make(), root / "parts", stop, **trainer_kwargs)
    ckpt = root / "parts" / "ckpt" / "last.ckpt"
    saved = load(ckpt)  # before the resumed run writes its own last.ckpt
    # Seeded differently: whatever randomness the rest of the run needs (dropout here) must come
    # from the checkpoint, not from the global seed.
    L.seed_everything(1, verbose=False)
    resumed, data = make()
    rest = fit_losses(resumed, data, root / "parts", TOTAL_STEPS, ckpt, **trainer_kwargs)
    assert list(expected) == list(range(1, TOTAL_STEPS + 1))
    assert list(first) + list(rest) == list(expected)
    for step, loss in {**first, **rest}.items():
        assert torch.equal(loss, expected[step]), f"loss of step {step}"
    weights = resumed.state_dict()
    assert weights.keys() == model.state_dict().keys()
    for name, value in model.state_dict().items():
        assert torch.equal(weights[name], value), name
    return saved


@pytest.mark.parametrize(
    ("stop", "workers", "trainer_kwargs", "position"),
    [
        # Validating only at the epoch's end, so last.ckpt is written when fit ends.
        (2, 0, {"val_check_interval": 3}, (0, 8)),
        (3, 0, {}, (1, 0)),
        (4, 0, {}, (1, 4)),
        (4, 2, {}, (1, 4)),
    ],
    ids=[
        "mid-epoch-0-saved-at-train-end",
        "at-end-of-epoch-0",
        "mid-epoch-1",
        "mid-epoch-1-workers",
    ],
)
def test_resumed_maze_run_is_the_uninterrupted_one(
    tmp_path: Path,
    stop: int,
    workers: int,
    trainer_kwargs: dict[str, Any],
    position: tuple[int, int],
) -> None:
    ckpt = resume_exactly(tmp_path, maze_run(workers), stop, **trainer_kwargs)
    state = ckpt["MazeDataModule"]
    assert (state["epoch"], state["samples"]) == position


@pytest.mark.parametrize(
    ("stop", "workers", "position"),
    [(3, 0, (0, 12)), (5, 0, (1, 0)), (7, 2, (1, 8))],
    ids=["mid-epoch-0", "at-end-of-epoch-0", "mid-epoch-1-workers"],
)
def test_resumed_lm_run_is_the_uninterrupted_one(
    tmp_path: Path, stop: int, workers: int, position: tuple[int, int]
) -> None:
    ckpt = resume_exactly(tmp_path, lm_run(tmp_path, workers), stop)
    state = ckpt["ByteTextDataModule"]
    assert (state["epoch"], state["samples"]) == position
