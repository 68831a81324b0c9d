"""Prediction folders (docs/reliability.md): a predict run deletes only what a predict run wrote,
never overwrites the user's files, says where it wrote, and fails in one line when it cannot."""

import errno
import json
import logging
import os
import re
from pathlib import Path

import lightning as L
import pytest

from lit_metriplector.callbacks import writers
from lit_metriplector.callbacks.writers import MazeWriter
from lit_metriplector.cli import main
from lit_metriplector.datamodules import MazeDataModule
from lit_metriplector.errors import OutputError
from lit_metriplector.modules import MazeTask
from lit_metriplector.networks import MazeNetwork

from .test_reliability import TINY_MAZE, fails_with

pytestmark = pytest.mark.filterwarnings("ignore:predict runs on the network's initial")

# predictions/maze/7x7/: 4 mazes a batch, each batch 4 PNGs and a text file.
FOLDER = Path("predictions", "maze")
UNTRAINED = ["--untrained=true", "--trainer.logger=false"]


def predict(size: int = 4, cells: int = 3) -> None:
    """A predict run of untrained tiny networks on ``size`` generated mazes of ``cells`` cells."""
    main(
        ["predict", *TINY_MAZE, *UNTRAINED]
        + [f"--data.init_args.predict_size={size}", f"--data.init_args.predict_cells={cells}"]
    )


def listed(folder: Path = FOLDER) -> set[str]:
    return set(json.loads((folder / "predictions.json").read_text())["files"])


def on_disk(folder: Path = FOLDER) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def add_user_files(folder: Path = FOLDER) -> dict[Path, str]:
    """A note and an analysis in a subfolder, as a user would add them; returns their texts."""
    files = {folder / "my_notes.txt": "keep me", folder / "my_analysis" / "result.csv": "a,b\n"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


def assert_unchanged(files: dict[Path, str]) -> None:
    for path, text in files.items():
        assert path.read_text() == text, path


def test_user_files_in_the_prediction_folder_survive_a_second_predict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    predict()
    user = add_user_files()
    predict()
    assert_unchanged(user)
    # The manifest lists exactly the run's files, and the run wrote nothing else.
    assert listed() == on_disk() - {"predictions.json", "my_notes.txt", "my_analysis/result.csv"}
    assert len(listed()) == 5


def test_a_second_predict_removes_the_files_and_emptied_folders_of_the_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    predict(size=8)  # 7x7/: two batches
    assert {"7x7/0001.txt", "7x7/0001_003.png"} <= listed()
    user = add_user_files()
    predict(size=4, cells=4)  # 9x9/: one batch; 7x7/ must go entirely
    assert_unchanged(user)
    assert not (FOLDER / "7x7").exists()
    assert listed() == {f"9x9/0000_00{i}.png" for i in range(4)} | {"9x9/0000.txt"}


def test_a_folder_without_a_manifest_is_written_beside_its_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    user = add_user_files()
    predict()
    assert_unchanged(user)
    assert len(listed()) == 5


@pytest.mark.slow
def test_a_name_taken_by_a_user_file_is_refused_and_the_file_kept(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    predict(size=4)
    user = add_user_files()
    user[FOLDER / "7x7" / "0001.txt"] = "my own maze"  # the name a second batch would take
    (FOLDER / "7x7" / "0001.txt").write_text("my own maze")
    fails_with(
        ["predict", *TINY_MAZE, *UNTRAINED, "--data.init_args.predict_size=8"],
        capsys,
        "predictions/maze/7x7/0001.txt was not written by a prediction run",
    )
    assert_unchanged(user)
    assert "7x7/0000.txt" in listed()  # what the refused run wrote, for the next one to remove
    (FOLDER / "7x7" / "0001.txt").unlink()
    predict(size=4)
    assert_unchanged({p: t for p, t in user.items() if p.name != "0001.txt"})
    assert len(listed()) == 5


def test_a_run_that_dies_midway_lists_what_it_wrote(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write = writers.atomic_write
    calls = []

    def die_in_the_second_batch(path, mode="wb"):
        calls.append(path)
        if len(calls) == 10:  # the manifest, then per batch the manifest and five files
            raise RuntimeError("killed")
        return write(path, mode)

    monkeypatch.setattr(writers, "atomic_write", die_in_the_second_batch)
    with pytest.raises(RuntimeError, match="killed"):
        predict(size=8)
    assert len(on_disk()) == 1 + 5 + 1  # the manifest, the first batch, one file of the second
    assert on_disk() - {"predictions.json"} < listed() and len(listed()) == 10
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    predict(size=4)  # removes all ten, written or not
    assert listed() == on_disk() - {"predictions.json"} and len(listed()) == 5


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders"
)
def test_a_read_only_prediction_folder_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    FOLDER.mkdir(parents=True)
    FOLDER.chmod(0o555)
    try:
        fails_with(["predict", *TINY_MAZE, *UNTRAINED], capsys, "predictions/maze", "permission")
    finally:
        FOLDER.chmod(0o755)


def test_an_uncreatable_prediction_folder_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("predictions").write_text("a file where the folder should be")
    fails_with(["predict", *TINY_MAZE, *UNTRAINED], capsys, "cannot create predictions/maze")


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.EACCES, "permission denied"),
        (errno.EROFS, "read-only"),
        (errno.ENOSPC, "disk is full"),
    ],
)
def test_a_failed_write_is_an_output_error_naming_the_file_and_cause(
    code, cause, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    def refuse(path, mode="wb"):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(writers, "atomic_write", refuse)  # works for root too, unlike chmod
    folder = tmp_path / "out"
    trainer = L.Trainer(
        callbacks=[MazeWriter(str(folder))],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    data = MazeDataModule(predict_cells=3, predict_size=4, batch_size=4)
    manifest = re.escape(str(folder / "predictions.json"))
    with pytest.raises(OutputError, match=f"^cannot write {manifest}: .*{cause}"):
        trainer.predict(MazeTask(network=MazeNetwork(features=8, fields=1)), datamodule=data)


def test_predict_says_where_it_wrote(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="lit_metriplector")
    predict()
    assert (
        "predict: wrote 5 files to predictions/maze (manifest: predictions/maze/predictions.json)"
        in caplog.messages
    )
