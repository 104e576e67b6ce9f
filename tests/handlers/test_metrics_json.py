"""EpochMetricsJSON: each epoch's mean loss and metrics; a resume continues the file, a fresh run starts a new one."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events

from segdino_monai.handlers import EpochMetricsJSON, ResumableCheckpoint
from segdino_monai.reporting import RunFolder, read_training_curves

ITERATIONS = 3  # per epoch


def _training(tmp_path, offset: float, resume: bool = False, val_every: int = 1, save_every: int = 1) -> Engine:
    """A trainer whose loss is ``offset + iteration``, validated every ``val_every`` epochs, checkpointed, recorded."""
    model = torch.nn.Linear(2, 1)
    # the output as MONAI's SupervisedTrainer leaves it (decollated: one dict per item, the batch loss in each)
    trainer = Engine(lambda engine, batch: [{"loss": torch.tensor(offset + engine.state.iteration)}] * 2)
    validator = Engine(lambda engine, batch: None)

    @validator.on(Events.EPOCH_COMPLETED)
    def score(engine):  # as MONAI's metric handlers: the validation's metrics, here a function of the trainer's epoch
        engine.state.metrics = {"val_mean_dice": trainer.state.epoch / 10, "val_label": "not a number"}

    @trainer.on(Events.EPOCH_COMPLETED)
    def trainer_metric(engine):  # the trainer's key metric, computed before the handlers run
        engine.state.metrics["train_mean_dice"] = torch.tensor(engine.state.epoch / 100)

    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=val_every), lambda _: validator.run([0]))
    ResumableCheckpoint(tmp_path / "models", {"model": model}, resume=resume, save_interval=save_every).attach(trainer)
    EpochMetricsJSON(tmp_path, validator).attach(trainer)
    return trainer


def _epochs(tmp_path) -> list[dict]:
    return json.loads(RunFolder(tmp_path).epoch_metrics.read_text())["epochs"]


def _mean_loss(offset: float, epoch: int) -> float:
    return offset + sum(range((epoch - 1) * ITERATIONS + 1, epoch * ITERATIONS + 1)) / ITERATIONS


def test_each_epoch_has_its_mean_loss_and_only_the_validations_that_ran(tmp_path):
    _training(tmp_path, offset=0.5, val_every=2).run(range(ITERATIONS), max_epochs=4)

    epochs = _epochs(tmp_path)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert [e["loss"] for e in epochs] == pytest.approx([_mean_loss(0.5, n) for n in range(1, 5)])  # 2.5, 5.5...
    assert [e["metrics"] for e in epochs] == [
        {"train_mean_dice": pytest.approx(0.01)},
        {"train_mean_dice": pytest.approx(0.02), "val_mean_dice": pytest.approx(0.2)},
        {"train_mean_dice": pytest.approx(0.03)},  # no validation in epoch 3: nothing stale from epoch 2
        {"train_mean_dice": pytest.approx(0.04), "val_mean_dice": pytest.approx(0.4)},
    ]
    curves = read_training_curves(RunFolder(tmp_path).epoch_metrics)  # what the report draws
    assert curves.loss == [(n, pytest.approx(_mean_loss(0.5, n))) for n in range(1, 5)]
    assert curves.metrics["val_mean_dice"] == [(2, pytest.approx(0.2)), (4, pytest.approx(0.4))]
    assert curves.best_epoch("val_mean_dice") == (4, pytest.approx(0.4))


def test_a_resumed_run_continues_the_file_and_a_fresh_run_starts_a_new_one(tmp_path):
    _training(tmp_path, offset=0.0, save_every=2).run(range(ITERATIONS), max_epochs=3)  # checkpoint of epoch 2
    assert [e["epoch"] for e in _epochs(tmp_path)] == [1, 2, 3]

    _training(tmp_path, offset=100.0, resume=True, save_every=2).run(range(ITERATIONS), max_epochs=4)

    epochs = _epochs(tmp_path)  # epochs 1-2 from the first run; 3 again (after the checkpoint of epoch 2) and 4
    assert [(e["epoch"], e["loss"]) for e in epochs] == [
        (1, pytest.approx(_mean_loss(0.0, 1))),
        (2, pytest.approx(_mean_loss(0.0, 2))),
        (3, pytest.approx(_mean_loss(100.0, 3))),
        (4, pytest.approx(_mean_loss(100.0, 4))),
    ]

    fresh = _training(tmp_path, offset=7.0)
    started = []
    fresh.add_event_handler(Events.STARTED, lambda _: started.append([e["epoch"] for e in _epochs(tmp_path)]))
    fresh.run(range(ITERATIONS), max_epochs=1)

    assert started == [[]]  # the earlier run's file is replaced as soon as the fresh run starts
    assert [(e["epoch"], e["loss"]) for e in _epochs(tmp_path)] == [(1, pytest.approx(_mean_loss(7.0, 1)))]
