"""MONAI's experiment tracking on the bundle: ``python -m monai.bundle run ... --tracking mlflow``."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from segdino_monai.cli import main
from segdino_monai.reporting import RunFolder
from tests.bundle.conftest import EVALUATE, bundle_run_command, run_command
from tests.conftest import TINY_VIT


def _run(client: MlflowClient, experiment: str, name: str | None = None):
    """The one run of ``experiment`` (the one named ``name`` if given)."""
    runs = client.search_runs(client.get_experiment_by_name(experiment).experiment_id)
    runs = [r for r in runs if name is None or r.info.run_name == name]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


def _artifact(client: MlflowClient, run, path: str, into: Path) -> Path:
    return Path(client.download_artifacts(run.info.run_id, path, str(into)))


def test_training_and_evaluation_with_mlflow_tracking(tmp_path: Path) -> None:
    # a local SQLite store: MONAI 1.6's MLFlowHandler refuses MLflow's file store (file:// URIs)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    work = tmp_path / "work"
    tracking = ("--tracking", "mlflow", "--tracking_uri", uri, "--experiment_name", "segdino")
    train = bundle_run_command(work, "--train#trainer#max_epochs", "2", *tracking, "--run_name", "train")
    result = run_command(train, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    client = MlflowClient(uri)
    run = _run(client, "segdino", "train")
    assert run.info.status == "FINISHED"
    assert run.data.params["max_epochs"] == "2"
    iterations = int(run.data.params["epoch_length"])
    epochs = json.loads(RunFolder(work / "eval").epoch_metrics.read_text())["epochs"]
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
    # the best model, byte for byte, and the executed config with the command line's overrides
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in names
    assert _artifact(client, run, "model.pt", tmp_path / "got").read_bytes() == (work / "models/model.pt").read_bytes()
    (config,) = [n for n in names if n.startswith("config_") and n.endswith(".json")]
    executed = json.loads(_artifact(client, run, config, tmp_path / "got").read_text())
    assert executed["train"]["trainer"]["max_epochs"] == 2
    assert executed["tracking_uri"] == uri

    evaluate = bundle_run_command(
        work, *tracking, "--run_name", "evaluate", config_file=json.dumps(EVALUATE), run_id="evaluating"
    )
    result = run_command(evaluate, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _run(client, "segdino", "evaluate")
    assert run.info.status == "FINISHED"
    # the test metrics of the report, and the report's files as artifacts
    logged = run.data.metrics
    assert {"test_mean_dice", "test_mean_iou", "test_hd95"} <= set(logged)
    with open(_artifact(client, run, "metrics_per_image.csv", tmp_path / "got"), newline="") as f:
        rows = list(csv.DictReader(f))
    dice = [float(r["test_mean_dice"]) for r in rows]
    assert logged["test_mean_dice"] == pytest.approx(statistics.fmean(dice), abs=1e-6)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics_summary.json", "report.html", "report.md"} <= names, names


def test_segdino_train_tracks_with_mlflow(tmp_path: Path, tiny_datalist: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tiny = [
        "--backbone-weights",
        "random",
        "--spatial-size",
        "64",
        "64",
        "--set",
        f"network_def#backbone_kwargs={TINY_VIT}",
    ]
    args = ["--datalist", str(tiny_datalist), "--output-dir", str(tmp_path / "eval"), "--ckpt-dir", str(tmp_path)]
    tracking = ["--tracking", "mlflow", "--tracking-uri", uri, "--set", "experiment_name=cli"]
    assert main(["train", *args, *tiny, "--epochs", "1", "--set", "num_workers=0", *tracking]) == 0

    client = MlflowClient(uri)
    run = _run(client, "cli")
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == int(run.data.params["epoch_length"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_mean_dice")] == [1]
    assert "model.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
