from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch.utils.tensorboard import SummaryWriter

from segdino_monai.reporting import read_training_curves


def _write_run(log_dir: Path, start: int, pid: int, losses: dict[int, float], dice: dict[int, float]) -> None:
    """Event files as one training process writes them, renamed to a chosen start time and process id."""
    scratch = log_dir.parent / f"scratch_{pid}"
    with SummaryWriter(str(scratch)) as writer:
        for step, value in losses.items():
            writer.add_scalar("train_loss", value, step)
        for epoch, value in dice.items():
            writer.add_scalar("val_mean_dice", value, epoch)
    log_dir.mkdir(exist_ok=True)
    (source,) = scratch.glob("events.out.tfevents.*")
    source.rename(log_dir / f"events.out.tfevents.{start}.host.{pid}.0")


def test_epoch_loss_is_the_mean_of_its_iterations_across_a_resumed_run(tmp_path):
    log_dir = tmp_path / "tensorboard"
    rng = np.random.default_rng(0)
    losses = {step: float(rng.uniform(0, 2)) for step in range(1, 11)}  # 5 epochs of 2 iterations
    dice = {epoch: float(rng.uniform()) for epoch in range(1, 6)}
    _write_run(log_dir, 1000, 11, {s: losses[s] for s in range(1, 7)}, {e: dice[e] for e in range(1, 4)})
    _write_run(log_dir, 2000, 22, {s: losses[s] for s in range(7, 11)}, {e: dice[e] for e in range(4, 6)})

    curves = read_training_curves(log_dir)

    assert curves.iterations_per_epoch == 2
    expected = [(e, np.mean([losses[2 * e - 1], losses[2 * e]])) for e in range(1, 6)]
    assert [e for e, _ in curves.loss] == [e for e, _ in expected]
    np.testing.assert_allclose([v for _, v in curves.loss], [v for _, v in expected], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in curves.metrics["val_mean_dice"]], list(dice.values()), rtol=1e-6)
    best = max(dice, key=dice.get)
    assert curves.best_epoch("val_mean_dice") == (best, pytest.approx(dice[best]))


def test_a_restart_from_scratch_replaces_the_earlier_run(tmp_path):
    log_dir = tmp_path / "tensorboard"
    _write_run(log_dir, 1000, 11, {s: 5.0 for s in range(1, 11)}, {e: 0.1 for e in range(1, 6)})
    _write_run(log_dir, 2000, 22, {1: 1.0, 2: 3.0, 3: 0.5, 4: 0.25}, {1: 0.6, 2: 0.7})

    curves = read_training_curves(log_dir)

    assert curves.loss == [(1, pytest.approx(2.0)), (2, pytest.approx(0.375))]
    assert curves.metrics["val_mean_dice"] == [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))]


def test_no_logs_give_empty_curves(tmp_path):
    assert not read_training_curves(tmp_path / "missing")
    assert not read_training_curves(tmp_path)
