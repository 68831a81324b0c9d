"""Command line: ``python -m lit_metriplector fit --config configs/maze.yaml`` (or
``lit-metriplector``). A ``LightningCLI`` in subclass mode: ``--model`` and ``--data`` take a
``class_path`` (short names such as ``MazeTask`` work) and ``init_args``.

The project's own errors (bad data, bad files, bad values, divergence) end the run with one
readable line on stderr and exit status 1; ``LIT_METRIPLECTOR_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import DefaultHelpFormatter, Namespace
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from . import callbacks, datamodules, modules  # noqa: F401  (registers the short class names)
from .checkpoints import (
    RunRecord,
    check_resume,
    check_task,
    check_weights,
    read_checkpoint,
    recipe,
    require_checkpoint_file,
)
from .datasets.files import describe_os_error
from .errors import ConfigError, MetriplectorError, MissingFileError
from .modules.base import MetriplectorTask

DEFAULT_SEED = 1234
DEBUG_ENV = "LIT_METRIPLECTOR_DEBUG"
DESCRIPTION = """\
Metriplector for PyTorch Lightning: the input configures a physical system and its metriplectic
dynamics is the computation.

Tasks (--model): MazeTask, LMTask, SudokuTask, ClassificationTask; networks in
lit_metriplector.networks. Shipped configs (configs/ in the repository): maze.yaml,
maze_loops.yaml, lm.yaml, lm_gpt.yaml, lm_modern_gpt.yaml, lm_lru.yaml, sudoku.yaml,
sudoku_rrn.yaml, sudoku_gpu.yaml, fashion_mnist.yaml, cifar10.yaml, cifar100.yaml and their
baselines; trainer overlays in configs/trainer/ (bf16, ddp, debug).

  lit-metriplector fit --config configs/maze.yaml
  lit-metriplector test --config configs/maze.yaml --ckpt_path last
  lit-metriplector fit --model.help MazeTask       (every argument of a task)

Each config writes checkpoints to runs/<task>/checkpoints/ (last.ckpt is the latest fit).
"""
# --ckpt_path values Lightning resolves itself
SPECIAL_CHECKPOINTS = ("last", "best", "hpc", "registry")
# A write refused for lack of permission, a read-only file system or a full disk.
WRITE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC)
# Lightning's ValueErrors that name a setting of the user's (not a bug).
LIGHTNING_SETTINGS = ("`val_check_interval`",)
# Config keys that name where a run writes; relative ones go under --trainer.default_root_dir.
OUTPUT_KEYS = ("save_dir", "dirpath", "output_dir", "cache_dir")
# What a run's log folder holds besides event files before anything is logged.
RUN_FILES = ("config.yaml", "hparams.yaml")
# The schedule, stated once: a scheduler's length (OneCycleLR's total_steps, CosineAnnealingLR's
# T_max) is trainer.max_steps, OneCycleLR's peak (max_lr) the optimizer's lr.
SCHEDULER = "model.init_args.lr_scheduler.init_args."
SCHEDULE_LENGTHS = ("total_steps", "T_max")
OPTIMIZER_LR = "model.init_args.optimizer.init_args.lr"
# Sizes the data decides (its attribute -> where the task and its network take them).
DATA_SIZES = {
    "num_classes": ("model.init_args.num_classes", "model.init_args.network.init_args.num_classes"),
    "vocab_size": ("model.init_args.network.init_args.vocab_size",),
    "channels": ("model.init_args.network.init_args.in_channels",),
}
SUBCOMMAND_HELP = {
    "fit": "Train (and with --test_after_fit true, then test).",
    "validate": "Evaluate a checkpoint on the validation set.",
    "test": "Evaluate a checkpoint on the data's test sets.",
    "predict": "Write a checkpoint's predictions to files (see the config's writer).",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """jsonargparse's help, with the description's lines (commands, lists) kept as written."""


def _test_names(data: L.LightningDataModule) -> list[str] | None:
    return getattr(data, "test_names", None)


def schedule_length(name: str) -> Callable[[int, int | None], int | None]:
    """The link that sets the scheduler's length argument ``name`` from ``trainer.max_steps``.

    Args:
        name: the scheduler's argument (``total_steps``, ``T_max``).
    """

    def schedule_length(max_steps: int, stated: int | None) -> int | None:
        if max_steps == -1:  # a run bounded by epochs or time: only a stated length is known
            if stated is None:
                raise ConfigError(
                    f"lr_scheduler {name}: the schedule's length is trainer.max_steps, which is "
                    f"not set; set trainer.max_steps"
                )
            return stated
        if stated is not None and stated != max_steps:
            raise ConfigError(
                f"lr_scheduler {name}={stated} but trainer.max_steps={max_steps}: leave {name} "
                f"out, the schedule's length is trainer.max_steps"
            )
        return max_steps

    return schedule_length


def schedule_peak(lr: float | None, stated: float | None) -> float | None:
    """The link that sets OneCycleLR's ``max_lr`` from the optimizer's ``lr``."""
    if stated is not None and lr is not None and stated != lr:
        raise ConfigError(
            f"lr_scheduler max_lr={stated} but the optimizer's lr={lr}: leave max_lr out, the "
            f"schedule's peak is the optimizer's lr"
        )
    return lr if stated is None else stated


def check_checkpoint(path: str | None) -> None:
    """A ``--ckpt_path`` that names a file must name a checkpoint (special values such as
    ``last`` are resolved and checked later)."""
    if path is not None and path not in SPECIAL_CHECKPOINTS:
        require_checkpoint_file(path)


def rebase_outputs(node: Any, root: str) -> None:
    """Put every relative output path of a parsed config (logger ``save_dir``, checkpoint
    ``dirpath``, writer ``output_dir``, data ``cache_dir``) under ``root``, in place."""
    if isinstance(node, list):
        for item in node:
            rebase_outputs(item, root)
    elif isinstance(node, Namespace):
        for key, value in list(node.items(branches=True)):
            if "." in key:
                continue  # reached through its branch
            if key in OUTPUT_KEYS and isinstance(value, (str, Path)):
                if not Path(value).is_absolute():
                    node[key] = str(Path(root) / value)
            else:
                rebase_outputs(value, root)


class Parser(LightningArgumentParser):
    """Lightning's parser with errors as one line and a pointer to ``--help`` (instead of the
    whole usage text), exit status 2 as for any usage error."""

    def error(self, message: str, ex: Exception | None = None) -> None:
        if not self.exit_on_error:
            super().error(message, ex)
        if isinstance(getattr(ex, "__cause__", None), MetriplectorError):
            # raised by a link (a stated schedule value that conflicts): its line says the fix
            print(f"lit-metriplector: error: {ex.__cause__}", file=sys.stderr)
            raise SystemExit(2)
        lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
        keys = dict.fromkeys(re.findall(r'Parser key "([^"]+)"', message))  # outer to inner
        lines = [re.sub(r'^(- )?Parser key "[^"]+":\s*', "", line) for line in lines]
        detail = next(
            (line for line in reversed(lines) if line and not line.startswith("Given value")),
            message,
        )
        text = f"{'.'.join(keys)}: {detail}" if keys else lines[0] if lines else message
        print(f"lit-metriplector: error: {text} (--help lists the options)", file=sys.stderr)
        raise SystemExit(2)


class MetriplectorCLI(LightningCLI):
    """LightningCLI with the data's decisions and the run's length linked into the model
    (docs/architecture.md lists the links) and guards on weights, checkpoints, output paths and
    resumes."""

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
        parser.add_argument(
            "--allow_recipe_change",
            type=bool,
            default=False,
            help="fit --ckpt_path: resume a checkpoint although the config's recipe (model, "
            "data, seed, schedule) differs from the one it was trained with",
        )
        # Test sets are named by the data (e.g. "39x39"); metrics are logged per name.
        parser.link_arguments(
            "data", "model.init_args.test_names", compute_fn=_test_names, apply_on="instantiate"
        )
        # Where the chosen classes take them (links to an argument they lack are skipped).
        for size, targets in DATA_SIZES.items():
            for target in targets:
                parser.link_arguments(f"data.{size}", target, apply_on="instantiate")
        # Each schedule link also reads the value a config may still state, to refuse a
        # conflicting one (a plain link would replace it unseen): its target is among its
        # sources, which jsonargparse 4.47 allows (tests/test_cli.py holds it to that).
        for name in SCHEDULE_LENGTHS:
            target = SCHEDULER + name
            parser.link_arguments(("trainer.max_steps", target), target, schedule_length(name))
        target = SCHEDULER + "max_lr"
        parser.link_arguments((OPTIMIZER_LR, target), target, schedule_peak)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        # Lightning takes the help of each subcommand from the first lines of the Trainer's
        # docstrings, which the help then cuts mid-sentence.
        super()._add_subcommands(parser, **kwargs)
        for action in parser._subcommands_action._choices_actions:
            action.help = SUBCOMMAND_HELP.get(action.dest, action.help)

    def _parse_ckpt_path(self) -> None:
        # Lightning would parse the checkpoint's hyperparameters over the config here, command
        # line included, so that explicit values were silently dropped. The config wins; a
        # checkpoint whose weights do not fit it is refused in before_<subcommand>.
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

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.get("trainer", {}).get("default_root_dir")
        if root is not None:
            rebase_outputs(config, str(root))

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # The sizes linked from the data into the parsed config too, which would otherwise hold
        # the defaults: the run's recipe and a checkpoint's checks see what the model was built
        # with (the checkpoint's hyperparameters hold the linked values already).
        config = self.config[self.subcommand] if self.subcommand else self.config
        for size, targets in DATA_SIZES.items():
            value = getattr(self.datamodule, size, None)
            for target in targets:
                if value is not None and target in config:
                    config[target] = value

    def _checkpoint_file(self) -> Path | None:
        """The file ``--ckpt_path`` names (``last`` resolved to this config's last checkpoint);
        None where Lightning resolves it from elsewhere (``hpc``, ``registry``)."""
        ckpt = self.config[self.subcommand].get("ckpt_path")
        if ckpt is None or ckpt in ("hpc", "registry"):
            return None
        if ckpt == "best":
            raise ConfigError(
                "--ckpt_path best: the best checkpoint is only known inside the fit that saved "
                "it; pass its file (see runs/<task>/checkpoints/) or --ckpt_path last"
            )
        if ckpt == "last":
            callback = self.trainer.checkpoint_callback
            folder = (
                None if callback is None or callback.dirpath is None else Path(callback.dirpath)
            )
            if folder is None or not (folder / "last.ckpt").is_file():
                where = "" if folder is None else f" ({folder}/last.ckpt)"
                raise MissingFileError(
                    f"--ckpt_path last: this config has no last checkpoint yet{where}; "
                    f"run fit first"
                )
            return folder / "last.ckpt"
        return Path(ckpt)

    def _check_run(self) -> None:
        """Checks before Lightning runs the subcommand: the optimizer's values, then the
        checkpoint (a readable one, of this task, with weights that fit, and for a resumed fit
        the same recipe)."""
        config = self.config[self.subcommand]
        fit = self.subcommand == "fit"
        if fit and isinstance(self.model, MetriplectorTask):
            self.model.check_optimizer()
        run_recipe = recipe(config) if fit else None
        path = self._checkpoint_file()
        if path is not None:
            checkpoint = read_checkpoint(path)
            check_task(path, checkpoint, self.model)
            check_weights(path, checkpoint, self.model, config["model"])
            if fit:
                check_resume(path, checkpoint, run_recipe, bool(config.get("allow_recipe_change")))
        if fit:
            self.trainer.callbacks.append(RunRecord(run_recipe))
        if self.subcommand == "predict":
            # predict writes files through its writers; a log folder would hold only a config
            self.trainer.logger = None
            self.trainer.callbacks = [
                c for c in self.trainer.callbacks if not isinstance(c, SaveConfigCallback)
            ]

    before_fit = before_validate = before_test = before_predict = _check_run

    def after_fit(self) -> None:
        if self.config[self.subcommand].get("test_after_fit") and not self.trainer.interrupted:
            self.trainer.test(self.model, datamodule=self.datamodule)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except Exception:  # not on signals: a stopped run's checkpoint names its log folder
            discard_empty_run(self.trainer)
            raise


def discard_empty_run(trainer: L.Trainer) -> None:
    """Remove the log folder of a run that failed before it logged anything: nothing in it but
    the config, the hyperparameters and event files without a scalar of its own."""
    logger = trainer.logger
    if not isinstance(logger, TensorBoardLogger) or not trainer.is_global_zero:
        return
    folder = Path(logger.log_dir)
    if not folder.is_dir():
        return
    files = list(folder.iterdir())
    if any(f.name not in RUN_FILES and not f.name.startswith("events.out.") for f in files):
        return
    logger.experiment.flush()
    events = EventAccumulator(str(folder), size_guidance={"scalars": 1})
    events.Reload()
    if set(events.Tags()["scalars"]) <= {"hp_metric"}:  # the logger's placeholder alone
        shutil.rmtree(folder)


class _NoAdvertisement(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()  # Lightning 2.6's tip on every run


NO_ADVERTISEMENT = _NoAdvertisement()


def _show_package_messages() -> None:
    """The package logs its data decisions (which corpus, how it is split) at INFO: show them on
    the command line next to Lightning's, unless the user has configured logging."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(NO_ADVERTISEMENT)
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


def user_error(error: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for a bug (traceback):
    the project's own errors, a file the run cannot write, a setting Lightning refuses."""
    project = _project_error(error)
    if project is not None:
        return str(project)
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        where = error.filename or "a file of the run"
        return f"cannot write {where}: {describe_os_error(error)}"
    if isinstance(error, MisconfigurationException) or (
        isinstance(error, ValueError) and str(error).strip().startswith(LIGHTNING_SETTINGS)
    ):
        return " ".join(str(error).split())
    return None


def build_cli(args: list[str] | None, run: bool = True) -> MetriplectorCLI:
    """The command line's ``MetriplectorCLI`` on ``args``.

    Args:
        args: command-line arguments (None: ``sys.argv``).
        run: run the subcommand that ``args`` names; False: no subcommand, only build.
    """
    return MetriplectorCLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        parser_class=Parser,
        seed_everything_default=DEFAULT_SEED,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "lit-metriplector",
            "description": DESCRIPTION,
            "formatter_class": HelpFormatter,
        },
        args=args,
        run=run,
    )


def build_from_config(
    path: str | Path, *overrides: str
) -> tuple[L.LightningModule, L.LightningDataModule]:
    """The task (with its network) and the DataModule that ``fit --config path`` builds, through
    the CLI's own parser: the same defaults, seed and links from the data. For tests and
    benchmarks; nothing is trained or loaded.

    Args:
        path: a config file, e.g. ``configs/fashion_mnist.yaml``.
        overrides: command-line arguments after it, e.g. ``--trainer.max_steps=100`` (the
            schedule follows it) or ``--model.init_args.network.init_args.steps=4``.
    """
    with warnings.catch_warnings():  # the calling script's own command line is not for the CLI
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cli = build_cli(["--config", str(path), *overrides], run=False)
    return cli.model, cli.datamodule


def main(args: list[str] | None = None) -> MetriplectorCLI:
    _show_package_messages()
    # Lightning 2.6.6 calls a pytree API that torch 2.13 deprecates; nothing for users to act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Each config keeps its checkpoints in one folder on purpose (last.ckpt = the latest fit).
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    MetriplectorError.last = None
    main_thread = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        return build_cli(args)
    except SIGTERMException:
        # Lightning's own SIGTERM handling outside the training steps (RunCheckpoint's inside):
        # a SystemExit without a status, which schedulers would record as a success.
        print("lit-metriplector: stopped by SIGTERM before training began", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    except SystemExit as exit_:
        if isinstance(exit_.__context__, KeyboardInterrupt):  # Lightning exits 1 on Ctrl-C
            raise SystemExit(128 + signal.SIGINT) from None
        raise
    except Exception as error:
        message = user_error(error)
        if message is None or os.environ.get(DEBUG_ENV):
            raise
        print(f"lit-metriplector: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        _close_process_group()
        if main_thread:  # Lightning ignores Ctrl-C for good after one: give it back (notebooks)
            signal.signal(signal.SIGINT, sigint)


def _close_process_group() -> None:
    """Lightning's DDP leaves the process group open; at interpreter exit gloo's worker threads
    may still hold tensors, and tearing them down then aborts the process ("terminate called
    without an active exception", exit -6, seen on CI after a successful DDP fit + test)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
