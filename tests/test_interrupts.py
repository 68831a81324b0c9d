"""Stopped fits: SIGTERM and Ctrl-C save a checkpoint of the run, exit 143 / 130 and resume to
the uninterrupted run's weights; a resume says which run and step it continues and refuses
another recipe; checkpoints are written whole or not at all."""

import errno
import logging
import os
import signal
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_metriplector.cli import main
from tests.test_reliability import TINY_MAZE as RELIABILITY_MAZE

# test_reliability's tiny maze fit, with a smaller training set and a fixed length
TINY_MAZE = [
    *RELIABILITY_MAZE,
    "--data.init_args.train_size=12",
    "--data.init_args.val_size=4",
    "--trainer.max_steps=10",
    "--trainer.val_check_interval=3",
    "--test_after_fit=false",
]
LAST = Path("runs/maze/checkpoints/last.ckpt")

pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"
)


class SignalAt(Callback):
    """Sends ``signum`` to this process when the fit starts step ``step`` (-1: in the sanity
    check, before training), as a scheduler (SIGTERM) or a user at the keyboard (SIGINT) would;
    ``times`` signals in a row."""

    def __init__(self, step: int, signum: int = signal.SIGTERM, times: int = 1) -> None:
        self.step, self.signum, self.times = step, signum, times

    def _send(self) -> None:
        for _ in range(self.times):
            os.kill(os.getpid(), self.signum)

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        if self.step == -1:
            self._send()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            self._send()


def signal_at(step: int, signum: int, times: int = 1) -> list[str]:
    return [
        "--trainer.callbacks+=tests.test_interrupts.SignalAt",
        f"--trainer.callbacks.step={step}",
        f"--trainer.callbacks.signum={signum}",
        f"--trainer.callbacks.times={times}",
    ]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture
def uninterrupted(tmp_path_factory) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("uninterrupted")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        main(["fit", *TINY_MAZE])
    finally:
        os.chdir(cwd)
    return weights(folder / LAST)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_the_run_exits_nonzero_and_resumes_exactly(
    signum, uninterrupted, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stopped:
        main(["fit", *TINY_MAZE, *signal_at(2, signum)])  # before the first checkpoint (step 3)
    assert stopped.value.code == 128 + signum
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # restored
    assert torch.load(LAST, weights_only=True)["global_step"] == 3  # the step it was in, done
    said = caplog.text
    assert f"fit stopped by {signal.Signals(signum).name} at step 3: saved" in said
    assert "--ckpt_path last" in said
    caplog.clear()
    with caplog.at_level(logging.INFO):
        main(["fit", *TINY_MAZE, "--ckpt_path", "last"])
    assert "resuming runs/maze/version_0" in caplog.text and "at step 3" in caplog.text
    resumed = weights(LAST)
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stopped:
        main(["fit", *TINY_MAZE, *signal_at(2, signal.SIGINT, times=2)])
    assert stopped.value.code == 130
    assert not LAST.exists()
    assert "second SIGINT" in caplog.text and "it saved no checkpoint" not in caplog.text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_before_training_exits_nonzero(signum, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # Ctrl-C as at a terminal: a shell's background job (nohup ... &) starts with it ignored
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(SystemExit) as stopped:
            main(["fit", *TINY_MAZE, *signal_at(-1, signum)])
        assert stopped.value.code == 128 + signum  # Lightning alone: 0 (SIGTERM), 1 (SIGINT)
        assert not LAST.exists()
        # Lightning sets Ctrl-C to be ignored after it caught one; the CLI gives it back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)


def test_a_crashed_fit_says_it_saved_no_checkpoint(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit):
        main(["fit", *TINY_MAZE, "--model.init_args.optimizer.init_args.lr=1e6"])
    assert "fit stopped at step" in caplog.text and "it saved no checkpoint" in caplog.text


@pytest.mark.slow
def test_a_resume_with_another_recipe_is_refused_unless_allowed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, "--model.init_args.optimizer.init_args.lr=0.001"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:
        main(["fit", *TINY_MAZE, "--ckpt_path", "last", "--trainer.max_steps=12"])
    assert refused.value.code == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if line.startswith("lit-metriplector: error"))
    assert "another recipe" in line and "lr: 0.001 -> 0.01" in line
    assert "max_steps: 10 -> 12" in line and "Traceback" not in err
    main(
        [
            "fit",
            *TINY_MAZE,
            "--ckpt_path",
            "last",
            "--trainer.max_steps=12",
            "--allow_recipe_change=true",
        ]
    )
    assert torch.load(LAST, weights_only=True)["global_step"] == 12


@pytest.mark.slow
def test_a_full_disk_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE])
    before = LAST.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # half a file written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit) as failed:
        main(["fit", *TINY_MAZE, "--trainer.max_steps=4"])
    assert failed.value.code == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("lit-metriplector: error: cannot write checkpoint")
    assert line.endswith("the disk is full")
    assert LAST.read_bytes() == before
    written = sorted(p.name for p in LAST.parent.iterdir())
    assert written == ["last.ckpt", "version_0-epoch=2-step=9.ckpt"]  # no partial file
