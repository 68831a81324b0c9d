"""Checkpoints a scheduler, a full disk or a debug run cannot turn into lost or wrong work."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import callbacks as lightning_callbacks
from lightning.pytorch.trainer.states import TrainerFn

from ..datasets.files import atomic_write, output_errors

log = logging.getLogger(__name__)

# What schedulers, `timeout` and Ctrl-C send; the exit status is 128 + the signal's number.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint under a temporary name and renames it into place: a write that fails
    (a full disk, a kill) leaves the previous file as it was and no truncated one beside it.
    Lightning's own save writes the final path directly."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with output_errors(path, "write checkpoint"), atomic_write(path) as file:
            torch.save(checkpoint, file)


class RunCheckpoint(lightning_callbacks.ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` (same arguments) for runs that may be stopped:

    - SIGTERM or SIGINT (Ctrl-C) during ``fit`` finishes the current step, saves ``last.ckpt``
      (or a step checkpoint when ``save_last`` is off), says where, and ends the process with
      status 128 + the signal (143, 130) so that schedulers see a stop, not a success. A second
      Ctrl-C stops at once without saving.
    - Checkpoints are written atomically (never a truncated file, e.g. on a full disk).
    - Step checkpoints are named after the run that wrote them (``version_3-epoch=0-step=100``)
      when no ``filename`` is given, so the files of several fits in one folder can be told apart.
    - A ``fast_dev_run`` never writes (Lightning 2.6.6 still saves ``last.ckpt`` at the end of
      one, which would replace the config's latest real fit with a two-batch model).
    - A fit that stops on an error says which checkpoint of it is the latest, or that it saved
      none.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._named_by_run = self.filename is None

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        if self._named_by_run and trainer.logger is not None:
            self.filename = f"version_{trainer.logger.version}-{{epoch}}-{{step}}"

    # --- signals -----------------------------------------------------------------------------

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        self.stop_signal = None
        if threading.current_thread() is threading.main_thread():  # signals reach only it
            for signum in STOP_SIGNALS:
                self._previous_handlers[signum] = signal.signal(signum, self._request_stop)

    def _request_stop(self, signum: int, frame: Any) -> None:
        if self.stop_signal == signal.SIGINT and signum == signal.SIGINT:
            self._restore_handlers()
            log.warning("fit stopped by a second SIGINT: no checkpoint saved of this step")
            raise SystemExit(128 + signum)  # the user will not wait for the step to end
        self.stop_signal = signum
        log.warning(
            f"received {signal.Signals(signum).name}: finishing this step, then saving a "
            f"checkpoint (Ctrl-C again to stop at once, without one)"
        )

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _stop_requested(self, trainer) -> bool:
        if trainer.world_size > 1:  # a signal may reach one rank only: all stop together
            return trainer.strategy.reduce_boolean_decision(self.stop_signal is not None, all=False)
        return self.stop_signal is not None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._stop_requested(trainer):
            self._stop(trainer)

    def _stop(self, trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self._last_global_step_saved != trainer.global_step:  # else saved at this very step
            if self.save_last:
                self._save_last_checkpoint(trainer, candidates)
            else:
                self._save_checkpoint(trainer, self.format_checkpoint_name(candidates))
        path = self.last_model_path if self.save_last else self._last_checkpoint_saved
        signum = self.stop_signal or signal.SIGTERM  # a DDP rank that another rank's signal stops
        log.warning(
            f"fit stopped by {signal.Signals(signum).name} at step {trainer.global_step}: saved "
            f"{path}; resume with the same command and --ckpt_path "
            f"{'last' if Path(path).name == 'last.ckpt' else path}"
        )
        self._restore_handlers()
        raise SystemExit(128 + signum)

    # --- the end of a fit --------------------------------------------------------------------

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_handlers()
        super().on_exception(trainer, pl_module, exception)
        stopped = isinstance(exception, SystemExit)  # by a signal: it has said what it saved
        if stopped or trainer.fast_dev_run or trainer.state.fn != TrainerFn.FITTING:
            return
        latest = self._last_checkpoint_saved
        log.warning(
            f"fit stopped at step {trainer.global_step}: "
            + (
                f"its latest checkpoint is {latest} (step {self._last_global_step_saved})"
                if latest
                else "it saved no checkpoint"
            )
        )
