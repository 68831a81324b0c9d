"""Resuming a maze run from last.ckpt through the CLI ends with the same model as an
uninterrupted run."""

from pathlib import Path
from typing import Any

import pytest
import torch

from lit_metriplector.cli import main
from lit_metriplector.modules import MazeTask

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

# Lightning's advice to use more workers, and its warning on resuming mid-epoch from a dataloader
# without state_dict (the datamodule holds that state); the resumed run's checkpoints joining the
# first run's.
pytestmark = [
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
    # checkpoint RNG states), and a run that silently started over would not match.
    ckpt = fit(tmp_path, steps, "--ckpt_path", str(half / "last.ckpt"), "--seed_everything", "1")
    resumed, expected = load(ckpt / "last.ckpt"), load(uninterrupted / f"step={steps}.ckpt")
    assert resumed["global_step"] == expected["global_step"] == steps
    epoch, batches = divmod(steps, BATCHES_PER_EPOCH)
    assert resumed["MazeDataModule"] == {"epoch": epoch, "samples": 4 * batches}
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
