"""Saving the network whenever the validation's key metric improves, atomically."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import ignite.distributed as idist
import torch
from ignite.engine import Events

from segdino_monai.utils.atomic import atomic_write

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["BestModelSaver"]

logger = logging.getLogger(__name__)


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
        if idist.get_rank() != 0:
            return
        network = self.network
        if isinstance(network, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            network = network.module
        state = network.state_dict()
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))
        logger.info("Saved %s (%s %.4f)", self.path, name, value)
