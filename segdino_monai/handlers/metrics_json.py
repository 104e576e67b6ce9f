"""Each training epoch's loss and validation metrics, appended to ``epoch_metrics.json`` in the run folder.

The report draws the training curves from this file (:func:`segdino_monai.reporting.read_training_curves`).
TensorBoard's event files hold the same numbers, but per iteration for the loss, one file per process and run, and
reading them needs TensorBoard's event parser; MONAI's ``MetricsSaver`` writes an evaluation's final metrics, not a
history. Hence this small handler.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ignite.distributed as idist
import torch
from ignite.engine import Events
from monai.handlers import from_engine

from segdino_monai.reporting import RunFolder
from segdino_monai.utils.atomic import write_json

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["EpochMetricsJSON"]

logger = logging.getLogger(__name__)


class EpochMetricsJSON:
    """Write ``<output_dir>/epoch_metrics.json``: one entry per completed training epoch.

    Each entry is ``{"epoch": 3, "loss": 0.41, "metrics": {"train_mean_dice": ..., "val_mean_dice": ...}}``: the
    mean of the iteration losses of the epoch, the trainer's epoch metrics, and the validator's metrics when it ran
    in that epoch (``val_interval``). The file is rewritten atomically after every epoch, so it always holds complete
    epochs. Runs repeat in the same folder: when training starts, the entries up to the trainer's starting epoch
    are kept (a resumed run continues its file; a fresh run starts at epoch 0 and so starts a new file), and any
    later entry, from an earlier run or an epoch that was cut short before its checkpoint, is dropped.

    Under DDP only rank 0 writes, with its own iteration losses (as ``StatsHandler`` logs them).

    Attach it to the trainer after the ``ValidationHandler``, so the epoch's validation has run when it writes.

    Args:
        output_dir: the run folder (the file is :attr:`segdino_monai.reporting.RunFolder.epoch_metrics`).
        validator: the evaluator whose metrics are recorded (the bundle's ``@validate#evaluator``); ``None``: none.
        loss_transform: picks the loss out of the trainer's ``engine.state.output`` (default: its ``"loss"``, as the
            bundle's ``StatsHandler`` reads it).
    """

    def __init__(
        self,
        output_dir: str | Path,
        validator: Engine | None = None,
        loss_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.path = RunFolder(output_dir).epoch_metrics
        self.validator = validator
        self.loss_transform = loss_transform or from_engine(["loss"], first=True)
        self.entries: list[dict[str, Any]] = []
        self._losses: list[float] = []
        self._validation: dict[str, float] | None = None

    def attach(self, engine: Engine) -> None:
        """Register with the trainer (and with the validator's ``COMPLETED`` event)."""
        engine.add_event_handler(Events.STARTED, self.started)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.epoch_completed)
        if self.validator is not None:
            self.validator.add_event_handler(Events.COMPLETED, self.validated)

    def started(self, engine: Engine) -> None:
        """Keep the entries of the epochs before this run's first one (none for a fresh run), rewrite the file."""
        first = engine.state.epoch  # after a resume: the epoch of the loaded checkpoint (loaded at STARTED, before)
        self.entries = [entry for entry in self._read() if entry["epoch"] <= first] if first else []
        self._write()

    def epoch_started(self, engine: Engine) -> None:
        """Forget the previous epoch's losses and validation."""
        self._losses, self._validation = [], None

    def iteration_completed(self, engine: Engine) -> None:
        """Record the iteration's loss."""
        self._losses.append(float(self.loss_transform(engine.state.output)))

    def validated(self, validator: Engine) -> None:
        """Record the validator's metrics (it runs inside the trainer's epoch)."""
        self._validation = _numbers(validator.state.metrics)

    def epoch_completed(self, engine: Engine) -> None:
        """Append the epoch's entry and rewrite the file."""
        loss = sum(self._losses) / len(self._losses) if self._losses else math.nan
        metrics = {**_numbers(engine.state.metrics), **(self._validation or {})}
        self.entries = [e for e in self.entries if e["epoch"] < engine.state.epoch]
        self.entries.append({"epoch": engine.state.epoch, "loss": loss, "metrics": metrics})
        self._write()

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        try:
            entries = json.loads(self.path.read_text(encoding="utf-8"))["epochs"]
            return [e for e in entries if isinstance(e, dict) and isinstance(e.get("epoch"), int)]
        except (ValueError, KeyError, TypeError) as err:
            logger.warning("%s is not an epoch metrics file (%s): a new one replaces it", self.path, err)
            return []

    def _write(self) -> None:
        if idist.get_rank() != 0:
            return
        write_json({"epochs": self.entries}, self.path, newline=False, default=None)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of ``engine.state.metrics`` (numbers, one-element tensors) as floats."""
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    scalars.update({k: v for k, v in metrics.items() if isinstance(v, torch.Tensor) and v.numel() == 1})
    return {str(k): float(v) for k, v in scalars.items()}
