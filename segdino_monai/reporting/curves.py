"""Training curves (loss and metrics per epoch) read back from a run's ``epoch_metrics.json``.

The training's :class:`segdino_monai.handlers.EpochMetricsJSON` writes one entry per epoch,
``{"epoch": 3, "loss": 0.41, "metrics": {"train_mean_dice": ..., "val_mean_dice": ...}}``, and keeps the file to
the latest run (a resumed run continues it, a fresh run replaces it): the curves are the file's entries as they are.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from segdino_monai.utils.errors import InputError

__all__ = ["TrainingCurves", "read_training_curves"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingCurves:
    """Per-epoch curves of one training run.

    Attributes:
        loss: ``(epoch, mean training loss over that epoch's iterations)`` pairs.
        metrics: epoch-level metric name (e.g. ``val_mean_dice``) to ``(epoch, value)`` pairs.
    """

    loss: list[tuple[int, float]] = field(default_factory=list)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.loss or any(self.metrics.values()))

    def best_epoch(self, metric: str) -> tuple[int, float] | None:
        """The epoch with the highest value of ``metric`` (the first of ties), or ``None``."""
        points = self.metrics.get(metric, [])
        return max(points, key=lambda p: (p[1], -p[0])) if points else None


def read_training_curves(path: str | Path) -> TrainingCurves:
    """Read the per-epoch curves of a training run.

    Args:
        path: the run's ``epoch_metrics.json`` (:attr:`segdino_monai.reporting.RunFolder.epoch_metrics`).

    Returns:
        The curves, in epoch order; empty when the file is missing. Undefined values (NaN) are left out.

    Raises:
        InputError: the file is not an epoch metrics file.
    """
    path = Path(path)
    if not path.is_file():
        return TrainingCurves()
    try:
        entries = sorted(json.loads(path.read_text(encoding="utf-8"))["epochs"], key=lambda e: e["epoch"])
        curves = TrainingCurves()
        for entry in entries:
            epoch = int(entry["epoch"])
            if not math.isnan(loss := float(entry["loss"])):
                curves.loss.append((epoch, loss))
            for name, value in entry["metrics"].items():
                if not math.isnan(float(value)):
                    curves.metrics.setdefault(name, []).append((epoch, float(value)))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(
            f"{path} is not an epoch metrics file ({type(err).__name__}: {err}). It is written by training "
            "(EpochMetricsJSON); delete it, or pass the right file with --epoch-metrics."
        ) from err
    return curves
