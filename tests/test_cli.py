"""Every shipped config through the CLI: --help, --print_config, a fast_dev_run fit, predict."""

from pathlib import Path

import pytest
import yaml

from lit_metriplector.cli import main

ROOT = Path(__file__).resolve().parents[1]
TASK_CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
OVERLAYS = sorted((ROOT / "configs" / "trainer").glob("*.yaml"))

# Per task: overrides that make a run tiny (the configs themselves are full size).
TINY = {
    "maze": [
        "--model.init_args.network.init_args.features=8",
        "--model.init_args.network.init_args.fields=1",
        "--data.init_args.train_cells=3",
        "--data.init_args.val_cells=3",
        "--data.init_args.test_cells=[4]",
        "--data.init_args.batch_size=4",
        "--data.init_args.predict_cells=3",
        "--data.init_args.predict_size=4",
    ],
}


def tiny(config: Path) -> list[str]:
    return ["--config", str(config), *TINY[config.stem]]


def test_every_task_config_has_tiny_overrides():
    assert {c.stem for c in TASK_CONFIGS} == set(TINY)


def test_help_names_the_program(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "lit-metriplector" in capsys.readouterr().out


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


@pytest.mark.parametrize("config", TASK_CONFIGS, ids=lambda p: p.stem)
def test_fast_dev_run_fit(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    debug = ROOT / "configs" / "trainer" / "debug.yaml"
    cli = main(
        ["fit", *tiny(config), "--config", str(debug), "--trainer.enable_progress_bar=false"]
    )
    assert cli.trainer.global_step == 2
    assert cli.trainer.state.finished


def test_maze_predict_writes_pictures_and_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "predict",
            *tiny(ROOT / "configs" / "maze.yaml"),
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    out = tmp_path / "predictions" / "maze" / "7x7"
    assert len(list(out.glob("*.png"))) == 4
    text = next(out.glob("*.txt")).read_text()
    assert text.count("S") == 4 and text.count("G") == 4
