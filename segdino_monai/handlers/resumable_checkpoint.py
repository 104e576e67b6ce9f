"""Saving the whole training state every epoch, and resuming from the latest save."""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
from ignite.engine import Events
from ignite.handlers import Checkpoint, DiskSaver
from monai.handlers import CheckpointLoader

from segdino_monai.utils.errors import InputError
from segdino_monai.utils.options import as_bool
from segdino_monai.workflows.checks import latest_checkpoint

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ResumableCheckpoint"]

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
            or its command-line spelling (``"false"``, ``"yes"``, ``1``...; see
            :func:`segdino_monai.utils.options.as_bool`).
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
        if idist.get_rank() == 0:
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
        if idist.get_rank() != 0:
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
