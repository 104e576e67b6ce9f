"""MONAI's experiment tracking on the bundle: ``python -m monai.bundle run training --tracking mlflow``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from segdino_monai.reporting import RunLayout
from tests.bundle.conftest import bundle_run_command, run_command


def test_training_with_mlflow_tracking_leaves_a_run_with_loss_and_validation_dice(tmp_path: Path) -> None:
    # a local SQLite store: MONAI 1.6's MLFlowHandler refuses MLflow's file store (file:// URIs)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    command = bundle_run_command(
        tmp_path / "work", "--train#trainer#max_epochs", "2", "--tracking", "mlflow", "--tracking_uri", uri
    )
    result = run_command(command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("monai_experiment")
    (run,) = client.search_runs(experiment.experiment_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == "2"
    iterations = int(run.data.params["epoch_length"])
    epochs = json.loads(RunLayout(tmp_path / "work" / "eval").epoch_metrics.read_text())["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    # the loss of every iteration of both epochs: their means are the epoch losses of epoch_metrics.json
    loss = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in loss] == list(range(1, 2 * iterations + 1))
    for index, epoch in enumerate(epochs):
        values = [m.value for m in loss[index * iterations : (index + 1) * iterations]]
        assert sum(values) / iterations == pytest.approx(epoch["loss"], rel=1e-6)
    # the validation Dice and IoU and the training Dice once per epoch, as epoch_metrics.json has them
    for name in ("val_mean_dice", "val_mean_iou", "train_mean_dice"):
        history = client.get_metric_history(run.info.run_id, name)
        assert [m.step for m in history] == [1, 2], name
        assert [m.value for m in history] == pytest.approx([e["metrics"][name] for e in epochs], abs=1e-6), name
