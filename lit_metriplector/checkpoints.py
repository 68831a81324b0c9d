"""What the CLI checks about a checkpoint before Lightning loads it: that it is one (and safe to
read), which task and run wrote it, whether its weights fit the configured network, and whether
a fit that resumes it trains with the recipe it was started with.

A fit run by the CLI records its recipe (``RunRecord``): the settings that change what is
trained (the model, the data except where it only names test or predict sets or how files are
loaded, the seed, and the trainer's schedule and numerics). A resume with another recipe is
refused in one line unless ``--allow_recipe_change true`` says it is meant.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from .errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

RECORD_KEY = "lit_metriplector"
# The trainer settings that change what a fit produces (the rest place or show its outputs).
RECIPE_TRAINER_KEYS = (
    "max_steps",
    "max_epochs",
    "precision",
    "gradient_clip_val",
    "gradient_clip_algorithm",
    "accumulate_grad_batches",
    "deterministic",
)
# Settings of the model or data that do not change training: evaluation-only sets, the test-time
# depth, how files are loaded and cached.
NOT_RECIPE = ("test", "predict", "num_workers", "cache_dir", "compile")
PLAIN = (str, int, float, bool, type(None))


def require_checkpoint_file(path: str | Path) -> Path:
    """``path`` if it is a file that can be a checkpoint; else one sentence saying what it is,
    before torch would suggest unsafe loading or Lightning would print a page of traceback."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--ckpt_path {path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise MissingFileError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise ConfigError(
            f"{path} is not a checkpoint (checkpoints are the zip archives that fit writes, "
            f"e.g. runs/maze/checkpoints/last.ckpt)"
        )
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded on the CPU with ``weights_only`` (tensors and plain
    values only: a file that would run code is refused, never loaded unsafely)."""
    path = require_checkpoint_file(path)
    try:
        # memory-mapped: the checks read shapes and small records, Lightning loads it after them
        checkpoint = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except pickle.UnpicklingError:
        raise ConfigError(
            f"{path} holds Python objects besides tensors and plain values; lit_metriplector "
            f"does not load such files, since unpickling them can run arbitrary code"
        ) from None
    except (RuntimeError, EOFError, KeyError, zipfile.BadZipFile):
        raise ConfigError(f"{path} is a zip archive but not a checkpoint torch can read") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{path} is not a Lightning checkpoint (it has no state_dict)")
    return checkpoint


def check_task(path: str | Path, checkpoint: dict[str, Any], model: nn.Module) -> None:
    """Refuse a checkpoint of another task, naming both (CLI checkpoints record the task's
    class path; others are left to the weight check)."""
    class_path = checkpoint.get("hyper_parameters", {}).get("_class_path")
    written_by = None if class_path is None else str(class_path).rsplit(".", 1)[-1]
    if written_by is not None and written_by != type(model).__name__:
        raise ConfigError(
            f"{path} is a {written_by} checkpoint, but this config builds a "
            f"{type(model).__name__}: pass the config of the task that wrote it"
        )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``; leaves other than plain values become strings (so a
    record stays loadable with ``weights_only``)."""
    if hasattr(tree, "as_dict"):  # a jsonargparse Namespace
        tree = tree.as_dict()
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(tree, (list, tuple)):
        tree = [item if isinstance(item, PLAIN) else str(item) for item in tree]
    elif not isinstance(tree, PLAIN):
        tree = str(tree)
    return {prefix.rstrip("."): tree}


def _in_recipe(key: str) -> bool:
    return not any(part.startswith(NOT_RECIPE) for part in key.split("."))


def recipe(config: Any) -> dict[str, Any]:
    """The settings of a subcommand's parsed config that change what a fit trains."""
    trainer = config["trainer"]
    tree = {
        "model": config["model"],
        "data": config["data"],
        "seed_everything": config.get("seed_everything"),
        "trainer": {key: trainer.get(key) for key in RECIPE_TRAINER_KEYS},
    }
    return {key: value for key, value in flatten(tree).items() if _in_recipe(key)}


def recipe_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every setting that differs."""
    missing = "(unset)"
    return [
        f"{key}: {old.get(key, missing)} -> {new.get(key, missing)}"
        for key in sorted(set(old) | set(new))
        if old.get(key, missing) != new.get(key, missing)
    ]


class RunRecord(Callback):
    """Writes into every checkpoint which run wrote it and with which recipe (added by the CLI).

    Args:
        recipe: the flattened settings that change what the fit trains.
    """

    def __init__(self, recipe: dict[str, Any]) -> None:
        self.recipe = recipe
        self.started = datetime.now(timezone.utc).isoformat(timespec="seconds")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        run = trainer.logger.log_dir if trainer.logger is not None else trainer.default_root_dir
        checkpoint[RECORD_KEY] = {"run": str(run), "started": self.started, "recipe": self.recipe}


def check_resume(
    path: str | Path, checkpoint: dict[str, Any], new_recipe: dict[str, Any], allow_change: bool
) -> None:
    """Say which run and step a fit continues; refuse another recipe unless allowed."""
    record = checkpoint.get(RECORD_KEY)
    step = checkpoint.get("global_step", "?")
    if record is None:
        log.warning(
            f"resuming {path} at step {step}; it does not record which run wrote it or its "
            f"recipe (written outside the CLI or by an older version), so neither is checked"
        )
        return
    log.info(f"resuming {record['run']} (started {record['started']}) at step {step} from {path}")
    changes = recipe_changes(record["recipe"], new_recipe)
    if changes and not allow_change:
        more = f"; and {len(changes) - 3} more" if len(changes) > 3 else ""
        shown = "; ".join(changes[:3]) + more
        raise ConfigError(
            f"{path} was written by a fit with another recipe ({shown}); resume with the "
            f"config it was started with, start afresh without --ckpt_path, or pass "
            f"--allow_recipe_change true (the optimizer's state, learning rate included, then "
            f"still comes from the checkpoint)"
        )
    if changes:
        log.warning(f"resuming with a changed recipe: {'; '.join(changes)}")


def check_weights(
    path: str | Path, checkpoint: dict[str, Any], model: nn.Module, config_model: Any
) -> None:
    """Refuse weights that do not fit the configured network, naming the settings that differ
    between the checkpoint's network and the config's (before Lightning prints a page)."""
    saved = checkpoint["state_dict"]
    current = model.state_dict()
    missing = [key for key in current if key not in saved]
    unexpected = [key for key in saved if key not in current]
    reshaped = [
        key
        for key in current
        if key in saved and tuple(saved[key].shape) != tuple(current[key].shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    facts = []
    if reshaped:
        key = reshaped[0]
        facts.append(
            f"{len(reshaped)} weights differ in shape (e.g. {key}: "
            f"{tuple(saved[key].shape)} there, {tuple(current[key].shape)} here)"
        )
    if missing:
        facts.append(f"{len(missing)} are missing (e.g. {missing[0]})")
    if unexpected:
        facts.append(f"{len(unexpected)} are not in this network (e.g. {unexpected[0]})")
    trained = flatten(checkpoint.get("hyper_parameters", {}).get("network", {}), "network.")
    configured = flatten(getattr(config_model, "init_args", {}).get("network", {}), "network.")
    settings = [
        f"--model.init_args.{key}={trained[key]} (the config has {configured.get(key)})"
        for key in sorted(trained)
        if trained[key] != configured.get(key)
    ]
    hint = f"; it was trained with {', '.join(settings)}" if settings else ""
    raise ConfigError(f"{path} does not fit the configured network: {', '.join(facts)}{hint}")
