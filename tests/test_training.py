"""Training-level behaviour: physics monitors and images read back from TensorBoard event
files, scalars without TensorBoard, bf16-mixed with float32 solves, 2-process DDP on CPU, and a
user subclass of the base task on the integrator branch."""

import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MeanSquaredError, MetricCollection

from lit_metriplector.callbacks import EnergyMonitor, EntropyMonitor, FieldImageLogger
from lit_metriplector.core import Chain1D, MetriplectorLayer, Rollout
from lit_metriplector.datamodules import MazeDataModule
from lit_metriplector.datasets.mazes import make_example
from lit_metriplector.modules import MazeTask, MetriplectorTask
from lit_metriplector.networks import MazeNetwork

ROOT = Path(__file__).resolve().parents[1]


def tiny_maze(**trainer_kw):
    task = MazeTask(network=MazeNetwork(features=8, fields=2))
    data = MazeDataModule(
        train_cells=3, val_cells=3, test_cells=[4], train_size=16, val_size=4, batch_size=4
    )
    kw = dict(
        max_steps=4,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    return task, data, {**kw, **trainer_kw}


def monitors():
    return [
        EnergyMonitor(every_n_steps=2),
        EntropyMonitor(every_n_steps=2),
        FieldImageLogger(every_n_steps=2, max_images=1),
    ]


def test_monitors_and_images_in_tensorboard(tmp_path):
    task, data, kw = tiny_maze()
    logger = TensorBoardLogger(tmp_path, name="maze")
    L.Trainer(logger=logger, callbacks=monitors(), **kw).fit(task, data)
    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]

    def values(tag):
        return {e.step: e.value for e in events.Scalars(tag)}

    residual = values("physics/layer0/cg_residual")
    assert set(residual) == {2, 4}  # every 2 steps, not re-emitted in between
    assert max(residual.values()) <= 1e-4
    assert min(values("physics/layer0/cg_iterations").values()) >= 1
    assert min(values("physics/layer0/entropy_produced").values()) > 0  # relaxation dissipates
    assert min(values("physics/layer0/entropy_step_min").values()) >= 0
    assert values("physics/entropy_violations") == {2: 0.0, 4: 0.0}
    assert {"train/loss_step", "val/f1", "val/exact"} <= set(scalars)
    images = set(events.Tags()["images"])
    assert {"fields/layer0/phi/0", "fields/layer0/current/0", "prediction/0"} <= images
    # 7x7 sites, each drawn as a 54-pixel square (not one pixel), with a legend strip below
    picture = events.Images("prediction/0")[-1]
    assert picture.width == 7 * 54 and picture.height > picture.width
    assert events.Images("fields/layer0/phi/0")[-1].width >= 256


def test_monitors_write_scalars_without_tensorboard(tmp_path):
    task, data, kw = tiny_maze()
    logger = CSVLogger(tmp_path, name="csv")
    L.Trainer(logger=logger, callbacks=monitors(), **kw).fit(task, data)
    header = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"physics/layer0/cg_residual", "physics/layer0/entropy_produced"} <= set(header)


def test_bf16_mixed_keeps_the_solve_in_float32():
    seen = {}

    class Spy(EnergyMonitor):
        def on_probe(self, trainer, pl_module, batch, output, reports):
            seen["output"] = output.dtype
            seen["phi"] = reports[0].state.phi.dtype
            seen["residual"] = float(reports[0].solve.residual.max())

    task, data, kw = tiny_maze(precision="bf16-mixed", logger=False)
    trainer = L.Trainer(callbacks=[Spy(every_n_steps=2)], **kw)
    trainer.fit(task, data)  # the probe runs under the trainer's precision, as the steps do
    assert trainer.global_step == 4
    assert seen["output"] == torch.bfloat16  # the network ran in bf16 ...
    assert seen["phi"] == torch.float32 and seen["residual"] <= 1e-4  # ... the solve did not


@pytest.mark.slow
def test_ddp_on_two_cpu_processes(tmp_path):
    args = [
        sys.executable,
        "-m",
        "lit_metriplector",
        "fit",
        "--config",
        str(ROOT / "configs" / "maze.yaml"),
        "--config",
        str(ROOT / "configs" / "trainer" / "ddp.yaml"),
        "--trainer.accelerator=cpu",
        "--trainer.devices=2",
        "--trainer.max_steps=2",
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        "--trainer.limit_val_batches=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.val_check_interval=1",
        "--model.init_args.network.init_args.features=8",
        "--model.init_args.network.init_args.fields=1",
        "--data.init_args.train_cells=3",
        "--data.init_args.val_cells=3",
        "--data.init_args.train_size=16",
        "--data.init_args.test_cells=[4]",  # configs/maze.yaml tests after fit
        "--data.init_args.test_size=8",
        "--data.init_args.batch_size=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in done.stderr + done.stdout


def test_the_cli_closes_the_process_group_it_opened(tmp_path, monkeypatch):
    # An open gloo group at interpreter exit can abort the process after a good run (exit -6).
    from lightning.fabric.plugins.environments.lightning import find_free_network_port

    from lit_metriplector.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MASTER_PORT", str(find_free_network_port()))
    cli = main(
        ["fit", "--config", str(ROOT / "configs" / "maze.yaml")]
        + ["--config", str(ROOT / "configs" / "trainer" / "ddp.yaml")]
        + ["--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.max_steps=1"]
        + ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]
        + ["--trainer.limit_val_batches=0", "--test_after_fit=false"]
        + ["--model.init_args.network.init_args.features=8"]
        + ["--model.init_args.network.init_args.fields=1"]
        + ["--data.init_args.train_cells=3", "--data.init_args.train_size=8"]
        + ["--data.init_args.batch_size=4"]
    )
    assert cli.trainer.world_size == 1 and cli.trainer.global_step == 1
    assert not torch.distributed.is_initialized()


class ChainTask(MetriplectorTask):
    """A user's own task: regress a per-site target on a chain with the full branch."""

    def build_metrics(self):
        return MetricCollection({"mse": MeanSquaredError()})

    def split_batch(self, batch):
        return batch

    def compute_loss(self, output, target):
        return nn.functional.mse_loss(output, target)


class ChainNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Conv1d(1, 8, 1)
        self.layer = MetriplectorLayer(
            8, dim=1, fields=2, dynamics=Rollout(branch="full", steps=4, rotation=True)
        )
        self.out = nn.Conv1d(8, 1, 1)

    def forward(self, x, diagnostics=False):
        h, report = self.layer(self.inp(x), Chain1D(x.shape[-1]), diagnostics=diagnostics)
        return self.out(h), [report] if report is not None else []


def test_energy_monitor_on_the_integrator_branch(tmp_path):
    x = torch.randn(16, 1, 12)
    loader = DataLoader(TensorDataset(x, x.roll(1, -1)), batch_size=4)
    logger = CSVLogger(tmp_path, name="chain")
    trainer = L.Trainer(
        max_steps=4,
        logger=logger,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[EnergyMonitor(every_n_steps=2), EntropyMonitor(every_n_steps=2)],
    )
    trainer.fit(ChainTask(ChainNetwork()), loader)
    rows = (Path(logger.log_dir) / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("physics/layer0/energy_drift")
    drifts = [float(r.split(",")[col]) for r in rows[1:] if r.split(",")[col]]
    assert drifts and max(drifts) < 0.05  # strang: bounded leapfrog error at the learned dt
    step_col = header.index("physics/layer0/entropy_step_min")
    step_mins = [float(r.split(",")[step_col]) for r in rows[1:] if r.split(",")[step_col]]
    assert step_mins and min(step_mins) >= 0


@pytest.mark.parametrize("callback", [EnergyMonitor, EntropyMonitor, FieldImageLogger])
def test_callback_state_round_trip(callback):
    a = callback(every_n_steps=3)
    a.probe, a.last_step = {"input": torch.ones(2)}, 9
    b = callback(every_n_steps=3)
    b.load_state_dict(a.state_dict())
    assert b.last_step == 9 and torch.equal(b.probe["input"], a.probe["input"])


def test_compile_flag_compiles_the_network_in_place(monkeypatch):
    compiles, calls = [], []

    def compile(fn, *args, **kwargs):  # records what nn.Module.compile hands torch.compile
        compiles.append(fn)

        def compiled(*a, **kw):
            calls.append(fn)
            return fn(*a, **kw)

        return compiled

    monkeypatch.setattr(torch, "compile", compile)
    task = MazeTask(network=MazeNetwork(features=8, fields=1), compile=True)
    task.configure_model()
    task.configure_model()  # called again (a resumed fit, each stage): no second compile
    task(torch.from_numpy(make_example(3, 0)[0])[None])
    # one compile, and the task's call ran the network through it: the task itself is not
    # compiled (Lightning's logging does not survive that)
    assert len(compiles) == 1 and len(calls) == 1
