"""A new user's path under bad input, divergence and repetition (docs/reliability.md): nothing
silent, nothing lost, errors as one readable line."""

import hashlib
import json
import logging
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lit_metriplector.cli import main
from lit_metriplector.core import CGOptions, Grid2D, System, solve
from lit_metriplector.datamodules import MazeDataModule
from lit_metriplector.errors import DivergenceError
from lit_metriplector.modules import MazeTask
from lit_metriplector.networks import MazeNetwork
from tests.test_cli import TINY_MAZE as TINY_MAZE_OVERRIDES

ROOT = Path(__file__).resolve().parents[1]
MAZE = ROOT / "configs" / "maze.yaml"
DEBUG = ROOT / "configs" / "trainer" / "debug.yaml"
TINY_MAZE = [
    "--config",
    str(MAZE),
    *TINY_MAZE_OVERRIDES,
    "--data.init_args.train_size=32",
    "--data.init_args.val_size=8",
    "--data.init_args.test_size=8",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]
SHORT_FIT = ["--trainer.max_steps=8", "--trainer.val_check_interval=4", "--test_after_fit=false"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fails_with(args: list[str], capsys, *fragments: str) -> str:
    """Run the CLI in-process: it must exit with status 1 and one line naming the problem."""
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lit-metriplector: error:")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- 1. divergence --------------------------------------------------------------------------


def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT])
    last = tmp_path / "runs" / "maze" / "checkpoints" / "last.ckpt"
    good = digest(last)
    line = fails_with(
        ["fit", *TINY_MAZE, *SHORT_FIT, "--model.init_args.optimizer.init_args.lr=1e6"],
        capsys,
        "training diverged at step",
        "layer 0:",
    )
    assert "CG residual" in line  # the rollout's diagnostics say what the physics did
    assert digest(last) == good


def test_a_nonfinite_source_gives_nonfinite_fields_not_a_silent_zero():
    system = System(Grid2D(4, 4), torch.ones(1, 1, 2, 4, 4), mass2=torch.ones(1, 1, 4, 4))
    source = torch.zeros(1, 1, 4, 4)
    source[0, 0, 1, 1] = float("inf")
    phi, info = solve(system.replace(source=source), CGOptions())
    assert torch.isnan(phi).all() and not info.converged.any()


def test_a_nonfinite_loss_names_the_step():
    task = MazeTask(network=MazeNetwork(features=8, fields=1))
    with torch.no_grad():
        task.network.head[-1].bias.fill_(float("nan"))
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=0,
    )
    with pytest.raises(DivergenceError, match="at step 0: the training loss is nan"):
        trainer.fit(task, MazeDataModule(train_cells=3, train_size=8, batch_size=4))


# --- 2. untrained weights, prediction folders ----------------------------------------------


@pytest.mark.parametrize("subcommand", ["test", "predict", "validate"])
def test_evaluating_without_a_checkpoint_is_refused(subcommand, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fails_with([subcommand, *TINY_MAZE], capsys, f"{subcommand} needs trained weights")


def test_untrained_weights_warn_in_python():
    task = MazeTask(network=MazeNetwork(features=8, fields=1))
    data = MazeDataModule(train_cells=3, test_cells=[3], test_size=4, batch_size=4)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match="initial \\(untrained\\) weights"):
        trainer.test(task, datamodule=data)


@pytest.mark.slow
def test_a_prediction_run_replaces_the_previous_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT])
    out = tmp_path / "predictions" / "maze" / "7x7"
    main(["predict", *TINY_MAZE, "--ckpt_path", "last", "--data.init_args.predict_size=8"])
    assert len(list(out.glob("*.png"))) == 8
    main(["predict", *TINY_MAZE, "--ckpt_path", "last"])  # 4 mazes: none of the 8 may remain
    assert len(list(out.glob("*.png"))) == 4
    manifest = json.loads((tmp_path / "predictions" / "maze" / "predictions.json").read_text())
    assert manifest["checkpoint"].endswith("last.ckpt")


# --- 3. one path to the latest model -------------------------------------------------------


@pytest.mark.slow
def test_the_readme_commands_stay_true_after_repeated_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    last = tmp_path / "runs" / "maze" / "checkpoints" / "last.ckpt"
    main(["fit", *TINY_MAZE, "--config", str(DEBUG)])  # a debug run writes no checkpoint
    assert not last.exists()
    steps = []
    for max_steps in (4, 8):
        main(["fit", *TINY_MAZE, *SHORT_FIT, f"--trainer.max_steps={max_steps}"])
        steps.append(torch.load(last, weights_only=False)["global_step"])
        main(["test", *TINY_MAZE, "--ckpt_path", "last"])
    assert steps == [4, 8]  # last.ckpt is always the latest fit, not last-v1.ckpt
    assert not list(last.parent.glob("last-v*.ckpt"))
    main(["fit", *TINY_MAZE, "--config", str(DEBUG)])
    assert torch.load(last, weights_only=False)["global_step"] == 8


def test_ckpt_path_last_without_a_fit_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fails_with(["test", *TINY_MAZE, "--ckpt_path", "last"], capsys, "no last checkpoint yet")


# --- 5. errors a person can read -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--data.init_args.batch_size=0"], ["batch_size must be >= 1, got 0"]),
        (["--data.init_args.test_files=[nope.txt]"], ["maze file not found: nope.txt"]),
        (["--ckpt_path", "missing.ckpt"], ["checkpoint not found: missing.ckpt"]),
        (["--ckpt_path", "notes.ckpt"], ["notes.ckpt is not a checkpoint"]),
        (["--data.init_args.test_files=[text.npz]"], ["text.npz", "not a readable .npz"]),
    ],
    ids=["batch_size", "maze_file", "missing_ckpt", "text_ckpt", "text_npz"],
)
def test_maze_errors_are_one_line(args, fragments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    (tmp_path / "text.npz").write_text("not an archive\n")
    line = fails_with(["fit", *TINY_MAZE, *SHORT_FIT, *args], capsys, *fragments)
    assert "weights_only" not in line and "allow_pickle" not in line


@pytest.mark.parametrize(
    ("corpus", "fragment"),
    [(None, "does not exist"), (b"", "is empty"), (b"short", "fewer than seq_len + 2")],
    ids=["missing", "empty", "too_short"],
)
def test_corpus_errors_are_one_line(corpus, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "corpus.txt"
    if corpus is not None:
        path.write_bytes(corpus)
    args = ["fit", "--config", str(ROOT / "configs" / "lm.yaml"), f"--data.init_args.path={path}"]
    fails_with([*args, "--data.init_args.seq_len=16", "--trainer.max_steps=1"], capsys, fragment)


@pytest.mark.slow
def test_errors_in_a_fresh_process_have_no_traceback(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_metriplector",
            "fit",
            *TINY_MAZE,
            "--data.init_args.batch_size=0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        "lit-metriplector: error: batch_size must be >= 1, got 0"
    )


# --- 6. warnings that cry wolf -------------------------------------------------------------


def test_the_first_maze_command_trains_without_solver_warnings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(
            [
                "fit",
                "--config",
                str(MAZE),
                "--trainer.max_steps=20",
                "--trainer.val_check_interval=10",
                "--data.init_args.val_size=32",
                "--data.init_args.test_size=32",
                "--trainer.enable_progress_bar=false",
                "--trainer.logger=false",
            ]
        )
    solver = [w for w in caught if "CG" in str(w.message)]
    assert not solver, [str(w.message) for w in solver]


# --- 9. overlays and the Python API --------------------------------------------------------


def test_test_metrics_outside_the_cli_have_one_prefix():
    task = MazeTask(network=MazeNetwork(features=8, fields=1))
    data = MazeDataModule(train_cells=3, test_cells=[3], test_size=4, batch_size=4)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.test(task, datamodule=data)
    assert "test/f1" in trainer.callback_metrics
    assert not any(key.startswith("test/test/") for key in trainer.callback_metrics)


def test_one_cycle_without_warmup_is_a_config_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fails_with(
        [
            "fit",
            *TINY_MAZE,
            *SHORT_FIT,
            "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.OneCycleLR",
            "--model.init_args.lr_scheduler.pct_start=0.125",  # of SHORT_FIT's 8 steps
        ],
        capsys,
        "pct_start x total_steps = 1",
    )


def test_checkpoints_load_with_the_network_passed_in_python(tmp_path):
    task = MazeTask(network=MazeNetwork(features=8, fields=1))
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        limit_val_batches=0,
    )
    trainer.fit(task, DataLoader([{"input": torch.zeros(3, 7, 7), "target": torch.zeros(7, 7)}]))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = MazeTask.load_from_checkpoint(path, network=MazeNetwork(features=8, fields=1))
    assert loaded.weights_origin == "checkpoint"


# --- 7. dashboards ---------------------------------------------------------------------------


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_maze_dashboard_has_the_learning_rate_the_recipe_and_a_final_metric(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT, "--trainer.log_every_n_steps=1"])
    events = read_events(tmp_path / "runs" / "maze" / "version_0")
    scalars = events.Tags()["scalars"]
    assert "lr-AdamW" in scalars and len(events.Scalars("lr-AdamW")) == 8
    hp = events.Scalars("hp_metric")
    assert hp[-1].value == events.Scalars("val/f1")[-1].value != -1
    session = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"optimizer/lr" in session and b"AdamW" in session


def test_lm_validation_logs_a_text_sample(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    main(
        [
            "fit",
            "--config",
            str(ROOT / "configs" / "lm.yaml"),
            f"--data.init_args.path={corpus}",
            "--model.init_args.network.init_args.width=16",
            "--model.init_args.network.init_args.layers=1",
            "--model.init_args.network.init_args.modes=4",
            "--model.init_args.sample_bytes=16",
            "--data.init_args.seq_len=16",
            "--data.init_args.batch_size=2",
            "--data.init_args.val_windows=2",
            "--trainer.max_steps=4",
            "--trainer.val_check_interval=2",
            "--trainer.enable_progress_bar=false",
        ]
    )
    events = read_events(tmp_path / "runs" / "lm" / "version_0")
    assert "samples/prompt0/text_summary" in events.Tags()["tensors"]
    assert len(events.Tensors("samples/prompt0/text_summary")) == 2


# --- 10. checkpoints, outputs and values a run can trust (issue 16) --------------------------


def test_default_root_dir_moves_every_output_of_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    root = [f"--trainer.default_root_dir={elsewhere}"]
    main(["fit", *TINY_MAZE, *SHORT_FIT, *root])
    main(["predict", *TINY_MAZE, *root, "--ckpt_path", "last"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]  # nothing in ./runs
    assert (elsewhere / "runs" / "maze" / "checkpoints" / "last.ckpt").is_file()
    assert list((elsewhere / "runs" / "maze" / "version_0").glob("events.out.*"))
    assert (elsewhere / "predictions" / "maze" / "predictions.json").is_file()


def test_hp_metric_stays_the_fits_metric_after_test_after_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit = ["fit", *TINY_MAZE, *SHORT_FIT, "--trainer.log_every_n_steps=1"]
    main([*fit, "--test_after_fit=true"])
    events = read_events(tmp_path / "runs" / "maze" / "version_0")
    assert "test/9x9/f1" in events.Tags()["scalars"]  # the test logged into the fit's run
    assert events.Scalars("hp_metric")[-1].value == events.Scalars("val/f1")[-1].value != -1


@pytest.mark.slow
def test_a_checkpoint_of_another_task_is_one_line_naming_both(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT])
    sudoku = ["--config", str(ROOT / "configs" / "sudoku.yaml")]
    line = fails_with(
        ["test", *sudoku, "--ckpt_path", "runs/maze/checkpoints/last.ckpt"], capsys, "MazeTask"
    )
    assert "SudokuTask" in line
    assert "Loaded model weights" not in capsys.readouterr().err


def test_weights_that_do_not_fit_name_the_settings_they_were_trained_with(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT])
    fails_with(
        ["test", *TINY_MAZE, "--ckpt_path", "last", "--model.init_args.network.init_args.fields=2"],
        capsys,
        "does not fit the configured network",
        "--model.init_args.network.init_args.fields=1 (the config has 2)",
    )


@pytest.mark.slow
def test_command_line_values_win_over_the_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT])
    path = "runs/maze/checkpoints/last.ckpt"  # a file: Lightning parsed its hyperparameters
    losses = []
    for weight in (1.0, 5.0):  # a model argument the weights do not depend on
        cli = main(
            [
                "test",
                *TINY_MAZE,
                "--ckpt_path",
                path,
                f"--model.init_args.pos_weight={weight}",
                "--data.init_args.test_size=3",  # and a data argument
            ]
        )
        assert cli.model.pos_weight == weight
        assert len(cli.datamodule.test_sets[0]) == 3
        losses.append(float(cli.trainer.callback_metrics["test/9x9/loss"]))
    assert losses[0] != losses[1]


def crafted_checkpoint(path: Path) -> None:
    class RunsCode:
        def __reduce__(self):
            return (print, ("this ran",))

    torch.save({"state_dict": {}, "payload": RunsCode()}, path)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--ckpt_path", "plain.zip"], ["plain.zip is a zip archive but not a checkpoint"]),
        (["--ckpt_path", "crafted.ckpt"], ["crafted.ckpt holds Python objects", "arbitrary code"]),
        (["--ckpt_path", "folder"], ["folder is a folder"]),
        (["--ckpt_path", "best"], ["--ckpt_path best", "--ckpt_path last"]),
        (["--data.init_args.test_files=[folder]"], ["maze file folder is a folder"]),
        (["--trainer.accelerator=gpu"], ["gpu backend"]),
        (["--trainer.logger.init_args.save_dir=/sys/runs"], ["cannot write /sys/runs"]),
    ],
    ids=["zip", "crafted", "folder_ckpt", "best", "folder_data", "gpu", "logger_folder"],
)
def test_more_errors_are_one_line(args, fragments, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    crafted_checkpoint(tmp_path / "crafted.ckpt")
    (tmp_path / "folder").mkdir()
    subcommand = "fit" if "--data.init_args.test_files=[folder]" in args else "test"
    line = fails_with([subcommand, *TINY_MAZE, *args, "--untrained=true"], capsys, *fragments)
    assert "weights_only=False" not in line and "this ran" not in capsys.readouterr().out


def test_a_negative_learning_rate_stops_before_the_run_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit = ["fit", *TINY_MAZE, *SHORT_FIT, "--model.init_args.optimizer.init_args.lr=-0.01"]
    fails_with(fit, capsys, "optimizer: Invalid learning rate: -0.01")
    assert not (tmp_path / "runs").exists()


def test_a_read_only_working_folder_is_one_line(monkeypatch, capsys):
    monkeypatch.chdir("/sys/kernel")  # refuses new files even to root
    fails_with(["fit", *TINY_MAZE, *SHORT_FIT], capsys, "cannot write", "permission denied")


@pytest.mark.slow
def test_a_failed_run_leaves_no_empty_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT])
    for _ in range(2):
        fails_with(
            ["fit", *TINY_MAZE, *SHORT_FIT, "--trainer.val_check_interval=100"],
            capsys,
            "val_check_interval",
        )
    main(["predict", *TINY_MAZE, "--ckpt_path", "last"])  # predict writes no run folder
    assert sorted(p.name for p in (tmp_path / "runs" / "maze").iterdir()) == [
        "checkpoints",
        "version_0",
    ]


def test_step_checkpoints_name_their_run_and_resumes_do_not_warn(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY_MAZE, *SHORT_FIT, "--trainer.max_steps=6"])
    folder = tmp_path / "runs" / "maze" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        "last.ckpt",
        "version_0-epoch=0-step=4.ckpt",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["fit", *TINY_MAZE, *SHORT_FIT, "--trainer.max_steps=6", "--ckpt_path", "last"])
    assert not [w for w in caught if "not resumable" in str(w.message)]


def test_help_describes_every_task_argument_in_full_sentences(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model.help", "SudokuTask"])
    assert "the task network (pure torch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for line in ("Evaluate a checkpoint on the data's test sets.", "Train (and with"):
        assert line in out
    assert "network``, required" in MazeTask.__doc__


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--data.init_args.batch_size=abc"], "Expected a <class 'int'>. Got value: abc"),
        (["--data.init_args.nope=3"], "Option 'nope' is not accepted"),
        (["--config", "missing.yaml"], "config: File does not exist"),
    ],
    ids=["type", "unknown", "missing_config"],
)
def test_usage_errors_are_one_line_with_status_2(args, fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", *TINY_MAZE, *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lit-metriplector: error:") and fragment in err[0]


def test_a_fit_prints_no_advertisement(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        main(["fit", *TINY_MAZE, *SHORT_FIT, "--trainer.max_steps=1"])
    assert "max_steps=1` reached" in caplog.text  # Lightning's own lines still come
    assert "litlogger" not in caplog.text


def test_a_single_test_set_named_test_logs_without_a_doubled_prefix():
    task = MazeTask(network=MazeNetwork(features=8, fields=1), test_names=["test"])
    assert [metrics.prefix for metrics in task.test_metrics] == ["test/"]
