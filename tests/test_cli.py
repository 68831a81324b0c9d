"""Every shipped config through the CLI: --help, --print_config, a fast_dev_run fit, predict."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_metriplector.cli import build_from_config, main

ROOT = Path(__file__).resolve().parents[1]
TASK_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
OVERLAYS = sorted((ROOT / "configs" / "trainer").glob("*.yaml"))

# Byte-text runs: a few short windows.
TINY_TEXT = [
    "--data.init_args.seq_len=16",
    "--data.init_args.batch_size=2",
    "--data.init_args.val_windows=2",
    "--data.init_args.test_windows=2",
    "--data.init_args.samples_per_epoch=4",
]
# Sudoku runs: a few generated puzzles, no cache.
TINY_SUDOKU = [
    "--data.init_args.train_size=8",
    "--data.init_args.val_size=4",
    "--data.init_args.test_size=2",
    "--data.init_args.test_sets=[36]",
    "--data.init_args.predict_size=2",
    "--data.init_args.batch_size=2",
    "--data.init_args.cache_dir=null",
]
SUDOKU_NETWORK = [
    "--model.init_args.network.init_args.features=8",
    "--model.init_args.network.init_args.fields=4",
    "--model.init_args.network.init_args.graphs=2",
    "--model.init_args.network.init_args.iterations=2",
    "--model.init_args.network.init_args.train_iterations=[1, 2]",
]
TINY_MAZE = [
    "--model.init_args.network.init_args.features=8",
    "--model.init_args.network.init_args.fields=1",
    "--data.init_args.train_cells=3",
    "--data.init_args.val_cells=3",
    "--data.init_args.test_cells=[4]",
    "--data.init_args.batch_size=4",
    "--data.init_args.predict_cells=3",
    "--data.init_args.predict_size=4",
]
# Per task: overrides that make a run tiny (the configs themselves are full size).
TINY = {
    "maze": TINY_MAZE,
    "maze_loops": TINY_MAZE,
    "lm": [
        "--model.init_args.network.init_args.width=16",
        "--model.init_args.network.init_args.layers=1",
        "--model.init_args.network.init_args.modes=4",
        "--model.init_args.max_new_bytes=8",
        *TINY_TEXT,
    ],
    "lm_gpt": [
        "--model.init_args.network.init_args.block_size=16",
        "--model.init_args.network.init_args.layers=1",
        "--model.init_args.network.init_args.heads=2",
        "--model.init_args.network.init_args.width=16",
        "--model.init_args.max_new_bytes=8",
        *TINY_TEXT,
    ],
    "lm_modern_gpt": [
        "--model.init_args.network.init_args.block_size=16",
        "--model.init_args.network.init_args.layers=1",
        "--model.init_args.network.init_args.heads=2",
        "--model.init_args.network.init_args.width=16",
        "--model.init_args.max_new_bytes=8",
        *TINY_TEXT,
    ],
    "lm_lru": [
        "--model.init_args.network.init_args.width=16",
        "--model.init_args.network.init_args.layers=1",
        "--model.init_args.network.init_args.states=4",
        "--model.init_args.max_new_bytes=8",
        *TINY_TEXT,
    ],
    "sudoku": [*SUDOKU_NETWORK, *TINY_SUDOKU],
    "sudoku_gpu": [*SUDOKU_NETWORK, *TINY_SUDOKU],
    "sudoku_rrn": [
        "--model.init_args.network.init_args.width=8",
        "--model.init_args.network.init_args.embedding=4",
        "--model.init_args.network.init_args.iterations=2",
        "--model.init_args.network.init_args.train_iterations=[1, 2]",
        *TINY_SUDOKU,
    ],
}


def tiny(config: Path) -> list[str]:
    return ["--config", str(config), *TINY[config.stem]]


# Configs whose data must be fabricated first: their CLI runs are in the tests named here.
ELSEWHERE = {
    name: "tests/test_images_task.py::test_image_config_fast_dev_run"
    for name in ("cifar10", "cifar10_wrn", "cifar100", "cifar100_wrn", "fashion_mnist")
}
TINY_CONFIGS = [c for c in TASK_CONFIGS if c.stem in TINY]


def test_every_task_config_has_tiny_overrides():
    assert {c.stem for c in TASK_CONFIGS} == set(TINY) | set(ELSEWHERE)


def test_help_names_the_program(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "lit-metriplector" in out
    # says what the tool is, its tasks and shipped configs, not only Lightning's generic text
    assert "physical system" in out and "MazeTask" in out and "configs/maze.yaml" in out


@pytest.mark.parametrize("config", TASK_CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("overlay", [None, *OVERLAYS], ids=lambda p: p.stem if p else "plain")
def test_print_config(config, overlay, capsys):
    args = ["fit", "--config", str(config)]
    if overlay is not None:
        args += ["--config", str(overlay)]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("lit_metriplector.modules.")
    if overlay is not None:
        for key, value in yaml.safe_load(overlay.read_text())["trainer"].items():
            assert printed["trainer"][key] == value


@pytest.mark.slow
@pytest.mark.parametrize("config", TINY_CONFIGS, ids=lambda p: p.stem)
def test_fast_dev_run_fit(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    debug = ROOT / "configs" / "trainer" / "debug.yaml"
    cli = main(
        ["fit", *tiny(config), "--config", str(debug), "--trainer.enable_progress_bar=false"]
    )
    assert cli.trainer.global_step == 2
    assert cli.trainer.state.finished


@pytest.mark.slow
def test_the_command_line_says_which_corpus_it_reads(tmp_path):
    # A fresh process, as users run it: the package's INFO messages reach the terminal.
    command = [sys.executable, "-m", "lit_metriplector", "fit", *tiny(ROOT / "configs" / "lm.yaml")]
    run = subprocess.run(
        [*command, "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "byte corpus: Python standard library sources" in run.stderr


@pytest.mark.slow
def test_maze_fit_ends_with_the_test_sets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    debug = ROOT / "configs" / "trainer" / "debug.yaml"
    config = ROOT / "configs" / "maze.yaml"
    cli = main(
        ["fit", *tiny(config), "--config", str(debug), "--trainer.enable_progress_bar=false"]
    )
    assert cli.config["fit"]["test_after_fit"]
    assert {"test/9x9/f1", "test/9x9/exact"} <= set(cli.trainer.callback_metrics)
    cli = main(
        ["fit", *tiny(config), "--config", str(debug), "--test_after_fit=false"]
        + ["--trainer.enable_progress_bar=false"]
    )
    assert not any(key.startswith("test/") for key in cli.trainer.callback_metrics)


@pytest.mark.slow
def test_maze_predict_writes_pictures_and_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "predict",
            *tiny(ROOT / "configs" / "maze.yaml"),
            "--untrained=true",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    out = tmp_path / "predictions" / "maze" / "7x7"
    assert len(list(out.glob("*.png"))) == 4
    text = next(out.glob("*.txt")).read_text()
    assert text.count("S") == 4 and text.count("G") == 4


@pytest.mark.slow
@pytest.mark.parametrize("config", ["lm", "lm_gpt"])
def test_lm_predict_writes_a_text_file_per_prompt(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "predict",
            *tiny(ROOT / "configs" / f"{config}.yaml"),
            "--data.init_args.prompts=[hello, é]",
            "--untrained=true",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    files = sorted((tmp_path / "predictions" / config).glob("*.txt"))
    assert [f.name for f in files] == ["prompt0.txt", "prompt1.txt"]
    texts = [f.read_text(encoding="utf-8") for f in files]
    assert texts[0].startswith("hello") and texts[1].startswith("é")
    assert len(texts[0]) > len("hello") and len(texts[1]) > len("é")


# --- facts stated once: the schedule follows the trainer ------------------------------------


def test_a_config_without_the_schedules_length_trains_over_max_steps(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(
        [
            "fit",
            *tiny(ROOT / "configs" / "maze.yaml"),
            "--model.init_args.optimizer.init_args.lr=0.004",
            "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.OneCycleLR",
            "--model.init_args.lr_scheduler.pct_start=0.25",
            "--data.init_args.train_size=24",
            "--trainer.max_steps=6",
            "--trainer.log_every_n_steps=1",
            "--trainer.limit_val_batches=0",
            "--test_after_fit=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.total_steps == scheduler.last_epoch == cli.trainer.global_step == 6
    assert scheduler.optimizer.param_groups[0]["max_lr"] == 0.004  # the peak: the optimizer's lr


COSINE = "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.CosineAnnealingLR"


def test_a_cosine_schedule_lasts_max_steps():
    task, _ = build_from_config(
        ROOT / "configs" / "sudoku_gpu.yaml", "--trainer.max_steps=40", COSINE
    )
    optimizer = task.optimizer([torch.nn.Parameter(torch.zeros(1))])
    assert task.lr_scheduler(optimizer).T_max == 40


@pytest.mark.parametrize(
    ("config", "stated", "message"),
    [
        (
            "lm",
            "--model.init_args.lr_scheduler.init_args.total_steps=10",
            "lr_scheduler total_steps=10 but trainer.max_steps=5000: leave total_steps out, "
            "the schedule's length is trainer.max_steps",
        ),
        (
            "sudoku_gpu",
            [COSINE, "--model.init_args.lr_scheduler.T_max=10"],
            "lr_scheduler T_max=10 but trainer.max_steps=6000: leave T_max out",
        ),
        (
            "lm",
            "--model.init_args.lr_scheduler.max_lr=0.5",
            "lr_scheduler max_lr=0.5 but the optimizer's lr=0.002: leave max_lr out, the "
            "schedule's peak is the optimizer's lr",
        ),
        (
            "lm",
            "--trainer.max_steps=-1",
            "lr_scheduler total_steps: the schedule's length is trainer.max_steps, which is not "
            "set; set trainer.max_steps",
        ),
    ],
)
def test_a_schedule_value_the_run_contradicts_is_one_line(config, stated, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        args = [stated] if isinstance(stated, str) else stated
        main(["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *args])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lit-metriplector: error: {message}")
