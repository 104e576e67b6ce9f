"""Saving the whole training state every epoch, and resuming from the latest save."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.utils import min_version, optional_import

from segdino_monai.engines.resolve import latest_checkpoint

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

    Args:
        save_dir: folder of the ``<file_prefix>_checkpoint_epoch=N.pt`` files (only the latest is kept).
        save_dict: the objects to save besides the trainer, e.g. ``{"model": net, "optimizer": opt}``.
        resume: load the latest checkpoint in ``save_dir`` before training (an error when there is none).
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
        self.resume = resume
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
        saver = CheckpointSaver(
            self.save_dir, objects, file_prefix=self.file_prefix, save_interval=self.save_interval, n_saved=1
        )
        saver.attach(engine)
        # A resumed run's saver does not know the files of the run before it: keep only the newest.
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._remove_older_saves)

    def _remove_older_saves(self, engine: Engine) -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank():
            return  # rank 0 writes and prunes
        newest = latest_checkpoint(self.save_dir, prefix=self.file_prefix)
        for path in Path(self.save_dir).glob(f"{self.file_prefix}*.pt"):
            if newest and str(path) != newest:
                path.unlink(missing_ok=True)
