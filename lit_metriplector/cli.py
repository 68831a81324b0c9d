"""Command line: ``python -m lit_metriplector fit --config configs/maze.yaml`` (or
``lit-metriplector``). A ``LightningCLI`` in subclass mode: ``--model`` and ``--data`` take a
``class_path`` (short names such as ``MazeTask`` work) and ``init_args``."""

from __future__ import annotations

import logging
import warnings

import lightning as L
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from . import callbacks, datamodules, modules  # noqa: F401  (registers the short class names)

DEFAULT_SEED = 1234


def _test_names(data: L.LightningDataModule) -> list[str] | None:
    return getattr(data, "test_names", None)


class MetriplectorCLI(LightningCLI):
    """LightningCLI with the data's decisions linked into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="after fit, test the final model on the data's test sets (fit only)",
        )
        # Test sets are named by the data (e.g. "39x39"); metrics are logged per name.
        parser.link_arguments(
            "data", "model.init_args.test_names", compute_fn=_test_names, apply_on="instantiate"
        )

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


def main(args: list[str] | None = None) -> MetriplectorCLI:
    _show_package_messages()
    # Lightning 2.6.6 calls a pytree API that torch 2.13 deprecates; nothing for users to act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    return MetriplectorCLI(
        model_class=L.LightningModule,
        datamodule_class=L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=DEFAULT_SEED,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "lit-metriplector"},
        args=args,
    )
