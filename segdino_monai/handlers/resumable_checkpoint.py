"""Saving the whole training state every epoch, resuming from the latest save, and stopping without a traceback."""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.handlers import CheckpointLoader
from monai.utils import min_version, optional_import

from segdino_monai.atomic import atomic_write
from segdino_monai.engines.resolve import latest_checkpoint
from segdino_monai.errors import InputError, input_error_message
from segdino_monai.options import as_bool

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
Checkpoint, _ = optional_import("ignite.handlers", "0.4.11", min_version, "Checkpoint")
DiskSaver, _ = optional_import("ignite.handlers", "0.4.11", min_version, "DiskSaver")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["BestModelSaver", "QuietStop", "ResumableCheckpoint"]

logger = logging.getLogger(__name__)

#: Names of the temporary files of Ignite's atomic ``DiskSaver`` (``tempfile.NamedTemporaryFile`` in the folder).
_IGNITE_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")


class ResumableCheckpoint:
    """Save model, optimizer, scheduler and trainer state every ``save_interval`` epochs; optionally resume first.

    The trainer is taken at ``attach`` time, so a bundle config can list this handler among the trainer's own
    handlers without a circular reference. Saving is Ignite's ``Checkpoint`` with an atomic ``DiskSaver`` (MONAI's
    ``CheckpointSaver`` writes in place, so Ctrl-C or a kill during a save left a truncated newest checkpoint that
    ``resume`` could not load); the files are named as MONAI's, ``<file_prefix>_checkpoint_epoch=N.pt``. Loading is
    MONAI's ``CheckpointLoader``: it restores the epoch and iteration counters, and the current ``max_epochs`` wins,
    so a finished run can be extended by resuming with a larger ``max_epochs``. Under DDP only rank 0 writes.

    Runs repeat in the same folder (the demo twice, the demo then real data, MONAI Label's retraining), so after
    each save the handler keeps exactly the file it just wrote and removes every other ``<file_prefix>_checkpoint*.pt``,
    whatever its epoch number: a fresh run replaces the files of the runs before it, and ``resume`` continues the
    newest file (by modification time, see :func:`latest_checkpoint`). Temporary files of a killed save are removed.

    Args:
        save_dir: folder of the ``<file_prefix>_checkpoint_epoch=N.pt`` files (only this run's latest is kept).
        save_dict: the objects to save besides the trainer, e.g. ``{"model": net, "optimizer": opt}``.
        resume: load the newest checkpoint in ``save_dir`` before training (an error when there is none); a boolean
            or its command-line spelling (``"false"``, ``"yes"``, ``1``...; see :func:`segdino_monai.options.as_bool`).
        save_interval: epochs between saves.
        file_prefix: prefix of the file names.
        map_location: ``torch.load`` map location when resuming.
    """

    def __init__(
        self,
        save_dir: str | Path,
        save_dict: dict[str, Any],
        resume: bool = False,
        save_interval: int = 1,
        file_prefix: str = "last",
        map_location: Any = "cpu",
    ) -> None:
        self.save_dir = str(save_dir)
        self.save_dict = dict(save_dict)
        self.resume = as_bool(resume, "resume")
        self.save_interval = save_interval
        self.file_prefix = file_prefix
        self.map_location = map_location
        self._checkpoint: Any = None

    def attach(self, engine: Engine) -> None:
        """Register the loader (when resuming) and the saver with the trainer."""
        objects = {**self.save_dict, "trainer": engine}
        if self.resume:
            path = latest_checkpoint(self.save_dir, required=True, prefix=self.file_prefix)
            _check_readable(path)
            logger.info("Resuming training from %s", path)
            CheckpointLoader(load_path=path, load_dict=objects, map_location=self.map_location).attach(engine)
        if _is_writer():
            self._remove_temporary_files()
        self._checkpoint = Checkpoint(
            to_save=objects,
            save_handler=DiskSaver(self.save_dir, require_empty=False, atomic=True),
            filename_prefix=self.file_prefix,
            score_function=lambda trainer: trainer.state.epoch,
            score_name="epoch",
            n_saved=None,  # Ignite removes old files *before* writing the new one; _save prunes after it is written
        )
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._save)

    def _save(self, engine: Engine) -> None:
        """Save this epoch's checkpoint, then remove every other one (the runs before this one left theirs)."""
        self._checkpoint(engine)
        if not _is_writer():
            return  # rank 0 writes and prunes
        own = Path(self._checkpoint.last_checkpoint).resolve()
        logger.info("Saved checkpoint at epoch: %d (%s)", engine.state.epoch, own.name)
        for path in Path(self.save_dir).glob(f"{self.file_prefix}_checkpoint*.pt"):
            if path.resolve() != own:
                logger.debug("removing the older training checkpoint %s", path)
                path.unlink(missing_ok=True)

    def _remove_temporary_files(self) -> None:
        folder = Path(self.save_dir)
        if folder.is_dir():
            for path in folder.iterdir():
                if _IGNITE_TEMPORARY.fullmatch(path.name) and path.is_file():
                    logger.warning("removing %s, the temporary file of an interrupted checkpoint save", path)
                    path.unlink(missing_ok=True)


def _is_writer() -> bool:
    """Rank 0 under DDP, else always."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    return not distributed or torch.distributed.get_rank() == 0


def _check_readable(path: str) -> None:
    """Raise :class:`InputError` when a checkpoint is not a complete ``torch.save`` file (a damaged or foreign one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            complete = any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        complete = False
    if not complete:
        raise InputError(
            f"Cannot resume (resume=true): the checkpoint {path} is damaged or not a training checkpoint. Delete it and"
            " train without --resume, or pass the --ckpt_dir of another run."
        )


class BestModelSaver:
    """Write the network's state to ``save_dir/filename`` (``model.pt``) whenever the evaluator's key metric improves.

    What MONAI's ``CheckpointSaver(save_key_metric=True, key_metric_filename="model.pt")`` does (the same file: the
    state dict of the network, unwrapped from DDP), but atomically: MONAI removes the old file and then writes the
    new one in place, so Ctrl-C or a kill at that moment left a truncated ``model.pt``, or none. The best value is
    this run's: a fresh or resumed run writes ``model.pt`` at its first validation. Under DDP only rank 0 writes.

    Args:
        save_dir: the folder of the file.
        network: the network whose ``state_dict`` is saved.
        filename: the file name.
        metric_name: the metric to compare (default: the evaluator's key metric); higher is better.
    """

    def __init__(
        self, save_dir: str | Path, network: torch.nn.Module, filename: str = "model.pt", metric_name: str | None = None
    ) -> None:
        self.path = Path(save_dir) / filename
        self.network = network
        self.metric_name = metric_name
        self.best: float | None = None

    def attach(self, engine: Engine) -> None:
        """Compare and save when the evaluator completes a run."""
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def completed(self, engine: Engine) -> None:
        """Save the network if the key metric is better than this run's best so far."""
        name = self.metric_name or engine.state.key_metric_name
        value = float(engine.state.metrics[name])
        if self.best is not None and not value > self.best:
            return
        self.best = value
        if not _is_writer():
            return
        network = self.network
        if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            network = network.module
        state = network.state_dict()
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        logger.info("Saved %s (%s %.4f)", self.path, name, value)


class QuietStop:
    """Let Ctrl-C and bad input end a run without MONAI's ``StatsHandler`` logging a traceback first.

    ``StatsHandler`` logs every exception of a run with its traceback before re-raising it; Ignite calls only the
    first ``EXCEPTION_RAISED`` handler that raises, so this handler, listed before ``StatsHandler``, re-raises
    Ctrl-C (``KeyboardInterrupt``) and bad input (see :func:`segdino_monai.errors.input_error_message`) silently:
    the command then reports them in one line (``Interrupted.``, exit 130; ``ERROR ...``, exit 2). Any other
    exception is logged with its traceback, as ``StatsHandler`` would, and re-raised.
    """

    def attach(self, engine: Engine) -> None:
        """Register the handler for ``EXCEPTION_RAISED`` (attach before ``StatsHandler``)."""
        engine.add_event_handler(Events.EXCEPTION_RAISED, self.exception_raised)

    def exception_raised(self, engine: Engine, error: BaseException) -> None:
        """Re-raise ``error``; log its traceback first unless it is Ctrl-C or bad input."""
        if not isinstance(error, KeyboardInterrupt) and input_error_message(error) is None:
            engine.logger.exception("Exception: %s", error)
        raise error
