"""Saving the whole training state every epoch, and resuming from the latest save."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.utils import min_version, optional_import

from segdino_monai.engines.resolve import latest_checkpoint
from segdino_monai.options import as_bool

Events, _ = optional_import("ignite.engine", "0.4.11", min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", "0.4.11", min_version, "Engine")

__all__ = ["ResumableCheckpoint"]

logger = logging.getLogger(__name__)


class ResumableCheckpoint:
    """Save model, optimizer, scheduler and trainer state every ``save_interval`` epochs; optionally resume first.

    The trainer is taken at ``attach`` time, so a bundle config can list this handler among the trainer's own
    handlers without a circular reference. It composes MONAI's ``CheckpointSaver`` and ``CheckpointLoader``; the
    loader restores the epoch and iteration counters, and the current ``max_epochs`` wins, so a finished run can be
    extended by resuming with a larger ``max_epochs``. Under DDP only rank 0 writes (Ignite's ``DiskSaver``).

    Runs repeat in the same folder (the demo twice, the demo then real data, MONAI Label's retraining), so after
    each save the handler keeps exactly the file this run's saver just wrote and removes every other
    ``<file_prefix>_checkpoint*.pt``, whatever its epoch number: a fresh run replaces the files of the runs before
    it, and ``resume`` continues the newest file (by modification time, see :func:`latest_checkpoint`).

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

    def attach(self, engine: Engine) -> None:
        """Register the loader (when resuming) and the saver with the trainer."""
        objects = {**self.save_dict, "trainer": engine}
        if self.resume:
            path = latest_checkpoint(self.save_dir, required=True, prefix=self.file_prefix)
            logger.info("Resuming training from %s", path)
            CheckpointLoader(load_path=path, load_dict=objects, map_location=self.map_location).attach(engine)
        self._saver = CheckpointSaver(
            self.save_dir, objects, file_prefix=self.file_prefix, save_interval=self.save_interval, n_saved=1
        )
        self._saver.attach(engine)
        # The saver knows only its own files: the runs before this one (resumed or not) left theirs.
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._remove_other_saves)

    def _remove_other_saves(self, engine: Engine) -> None:
        """Remove every checkpoint of this prefix but the one this run's saver wrote last (after it wrote it)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return  # rank 0 writes and prunes
        # MONAI's saver keeps its ignite Checkpoint, whose last_checkpoint is the file it wrote last, in a private
        # attribute; without it (another MONAI version), the newest file by modification time is the one just written.
        checkpoint = getattr(self._saver, "_interval_checkpoint", None)
        if checkpoint is not None:
            own_file = checkpoint.last_checkpoint
        else:
            own_file = latest_checkpoint(self.save_dir, prefix=self.file_prefix)
        if not own_file:
            return  # nothing saved yet by this run (save_interval > 1)
        own = Path(own_file).resolve()
        for path in Path(self.save_dir).glob(f"{self.file_prefix}_checkpoint*.pt"):
            if path.resolve() != own:
                logger.debug("removing the older training checkpoint %s", path)
                path.unlink(missing_ok=True)
