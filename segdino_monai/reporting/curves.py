"""Training curves (loss and validation metrics per epoch) read back from a run's TensorBoard logs.

The bundle's ``TensorBoardStatsHandler`` writes the training loss once per iteration (step = iteration) and the
epoch metrics once per epoch (step = epoch): ``train_mean_dice`` from the trainer and ``val_*`` from the validator.
Each process writes its own event files (``events.out.tfevents.<time>.<host>.<pid>.<n>``): a resumed training adds
files that continue the steps, a training restarted from scratch in the same folder adds files that start again at
step 1, and only that latest run is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["TrainingCurves", "read_training_curves"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingCurves:
    """Per-epoch curves of one training run.

    Attributes:
        loss: ``(epoch, mean training loss over that epoch's iterations)`` pairs.
        metrics: epoch-level metric name (e.g. ``val_mean_dice``) to ``(epoch, value)`` pairs.
        iterations_per_epoch: iterations in one epoch (0 when unknown).
    """

    loss: list[tuple[int, float]] = field(default_factory=list)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    iterations_per_epoch: int = 0

    def __bool__(self) -> bool:
        return bool(self.loss or any(self.metrics.values()))

    def best_epoch(self, metric: str) -> tuple[int, float] | None:
        """The epoch with the highest value of ``metric`` (the first of ties), or ``None``."""
        points = self.metrics.get(metric, [])
        return max(points, key=lambda p: (p[1], -p[0])) if points else None


def read_training_curves(log_dir: str | Path, loss_tag: str = "train_loss") -> TrainingCurves:
    """Read the per-epoch curves of the run logged in ``log_dir``.

    Args:
        log_dir: the folder of TensorBoard event files (``<output_dir>/tensorboard`` in the bundle).
        loss_tag: the per-iteration loss tag.

    Returns:
        The curves; empty when the folder is missing or holds no scalars.
    """
    scalars: dict[str, list[tuple[int, float]]] = {}
    for process in _processes(Path(log_dir)):
        written = _read_scalars(process)
        if written.get(loss_tag) and written[loss_tag][0][0] <= 1:  # a new training from scratch
            scalars = {}
        for tag, points in written.items():
            scalars.setdefault(tag, []).extend(points)
    per_iteration = _last_per_step(scalars.pop(loss_tag, []))
    metrics = {tag: _last_per_step(points) for tag, points in scalars.items()}
    last_epoch = max((points[-1][0] for points in metrics.values() if points), default=0)
    if not per_iteration or not last_epoch:
        return TrainingCurves(metrics=metrics)
    # Every epoch has the same number of iterations; the last logged iteration closes the last logged epoch.
    per_epoch = max(1, round(per_iteration[-1][0] / last_epoch))
    steps = np.array([s for s, _ in per_iteration])
    values = np.array([v for _, v in per_iteration])
    epochs = (steps - 1) // per_epoch + 1
    loss = [(int(e), float(values[epochs == e].mean())) for e in np.unique(epochs)]
    return TrainingCurves(loss=loss, metrics=metrics, iterations_per_epoch=per_epoch)


def _processes(log_dir: Path) -> list[list[Path]]:
    """The event files of ``log_dir`` grouped by the process that wrote them, oldest first."""
    files = []
    for path in log_dir.glob("events.out.tfevents.*") if log_dir.is_dir() else []:
        parts = path.name.split(".")  # events, out, tfevents, time, host..., pid, n
        start = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 0
        files.append((start, path.name, ".".join(parts[4:-1]), path))
    groups: list[list[Path]] = []
    writer = None
    for _, _, process, path in sorted(files):
        if process != writer:  # the files of one process are written within its run, so they are adjacent
            groups.append([])
            writer = process
        groups[-1].append(path)
    return groups


def _read_scalars(files: list[Path]) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # it logs every file it opens
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})  # 0: keep every point
        events.Reload()
        for tag in events.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((int(e.step), float(e.value)) for e in events.Scalars(tag))
    return scalars


def _last_per_step(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One value per step, the last one written, in step order."""
    return sorted(dict(points).items())
