"""Command line: ``python -m lit_metriplector fit --config configs/maze.yaml`` (or
``lit-metriplector``). A ``LightningCLI`` in subclass mode: ``--model`` and ``--data`` take a
``class_path`` (short names such as ``MazeTask`` work) and ``init_args``.

The project's own errors (bad data, bad files, bad values, divergence) end the run with one
readable line on stderr and exit status 1; ``LIT_METRIPLECTOR_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
import zipfile
from pathlib import Path

import lightning as L
import torch
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from . import callbacks, datamodules, modules  # noqa: F401  (registers the short class names)
from .errors import ConfigError, MetriplectorError, MissingFileError

DEFAULT_SEED = 1234
DEBUG_ENV = "LIT_METRIPLECTOR_DEBUG"
DESCRIPTION = """\
Metriplector for PyTorch Lightning: the input configures a physical system and its metriplectic
dynamics is the computation.

Tasks (--model): MazeTask, LMTask, SudokuTask, ClassificationTask; networks in
lit_metriplector.networks. Shipped configs (configs/ in the repository): maze.yaml, lm.yaml,
lm_selective.yaml, lm_gpt.yaml, lm_modern_gpt.yaml, lm_lru.yaml, sudoku.yaml, sudoku_rrn.yaml,
fashion_mnist.yaml, cifar10.yaml, cifar100.yaml and their baselines; trainer overlays in
configs/trainer/ (bf16, ddp, debug).

  lit-metriplector fit --config configs/maze.yaml
  lit-metriplector test --config configs/maze.yaml --ckpt_path last
  lit-metriplector fit --model.help MazeTask       (every argument of a task)

Each config writes checkpoints to runs/<task>/checkpoints/ (last.ckpt is the latest fit).
"""
# --ckpt_path values Lightning resolves itself
SPECIAL_CHECKPOINTS = ("last", "best", "hpc", "registry")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description's lines (commands, lists) kept as written."""


def _test_names(data: L.LightningDataModule) -> list[str] | None:
    return getattr(data, "test_names", None)


def check_checkpoint(path: str | None) -> None:
    """Fail with one sentence on a checkpoint path that is missing or is no checkpoint, before
    torch would suggest unsafe loading or Lightning would print a page of traceback."""
    if path is None or path in SPECIAL_CHECKPOINTS:
        return
    if not Path(path).is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise ConfigError(
            f"{path} is not a checkpoint (checkpoints are the zip archives that fit writes, "
            f"e.g. runs/maze/checkpoints/last.ckpt)"
        )


class MetriplectorCLI(LightningCLI):
    """LightningCLI with the data's decisions linked into the model and guards on weights."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="after fit, test the final model on the data's test sets (fit only)",
        )
        parser.add_argument(
            "--untrained",
            type=bool,
            default=False,
            help="allow validate/test/predict without --ckpt_path, i.e. on the network's "
            "initial weights (smoke tests only)",
        )
        # Test sets are named by the data (e.g. "39x39"); metrics are logged per name.
        parser.link_arguments(
            "data", "model.init_args.test_names", compute_fn=_test_names, apply_on="instantiate"
        )

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads the hyperparameters of --ckpt_path here, before any hook of ours:
        # check the file first, so a wrong one gets a sentence instead of torch's unpickler.
        subcommand = self.config.get("subcommand")
        if subcommand:
            config = self.config[subcommand]
            ckpt = config.get("ckpt_path")
            check_checkpoint(ckpt)
            if ckpt is None and subcommand != "fit" and not config.get("untrained"):
                raise ConfigError(
                    f"{subcommand} needs trained weights: pass --ckpt_path (e.g. --ckpt_path last "
                    f"for this config's latest fit), or --untrained true to run on initial weights"
                )
        super()._parse_ckpt_path()

    def _check_last(self) -> None:
        """``--ckpt_path last`` must find this config's last checkpoint (Lightning would start
        from scratch with a hint about save_last)."""
        if self.config[self.subcommand].get("ckpt_path") == "last":
            callback = self.trainer.checkpoint_callback
            last = None if callback is None or callback.dirpath is None else callback.dirpath
            if last is None or not (Path(last) / "last.ckpt").is_file():
                where = "" if last is None else f" ({last}/last.ckpt)"
                raise MissingFileError(
                    f"--ckpt_path last: this config has no last checkpoint yet{where}; "
                    f"run fit first"
                )

    def before_fit(self) -> None:
        self._check_last()

    before_validate = before_test = before_predict = before_fit

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit") and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)


def _show_package_messages() -> None:
    """The package logs its data decisions (which corpus, how it is split) at INFO: show them on
    the command line next to Lightning's, unless the user has configured logging."""
    logger = logging.getLogger("lit_metriplector")
    if not logger.handlers and not logging.getLogger().hasHandlers():
        logger.addHandler(logging.StreamHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _project_error(error: BaseException) -> MetriplectorError | None:
    """The project's error behind ``error``: itself, one it was raised from, or one that a
    library (jsonargparse validating a constructor) only kept as text."""
    seen = error
    while seen is not None:
        if isinstance(seen, MetriplectorError):
            return seen
        seen = seen.__cause__ or seen.__context__
    last = MetriplectorError.last
    return last if last is not None and str(last) in str(error) else None


def main(args: list[str] | None = None) -> MetriplectorCLI:
    _show_package_messages()
    # Lightning 2.6.6 calls a pytree API that torch 2.13 deprecates; nothing for users to act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Each config keeps its checkpoints in one folder on purpose (last.ckpt = the latest fit).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    MetriplectorError.last = None
    try:
        return MetriplectorCLI(
            model_class=L.LightningModule,
            datamodule_class=L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=DEFAULT_SEED,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={
                "prog": "lit-metriplector",
                "description": DESCRIPTION,
                "formatter_class": HelpFormatter,
            },
            args=args,
        )
    except Exception as error:
        project = _project_error(error)
        if project is None or os.environ.get(DEBUG_ENV):
            raise
        print(f"lit-metriplector: error: {project}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        _close_process_group()


def _close_process_group() -> None:
    """Lightning's DDP leaves the process group open; at interpreter exit gloo's worker threads
    may still hold tensors, and tearing them down then aborts the process ("terminate called
    without an active exception", exit -6, seen on CI after a successful DDP fit + test)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
