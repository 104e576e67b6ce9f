"""SegmentationReport through the bundle: the report finds the masks where the evaluation wrote them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from segdino_monai.data.demo import make_demo_dataset
from segdino_monai.reporting import RunFolder
from tests.bundle.conftest import EVALUATE, TRAIN, tiny_overrides, workflow
from tests.reporting.test_page import _Page


def test_report_shows_the_cases_from_an_overridden_predictions_dir(tmp_path):
    datalist = make_demo_dataset(tmp_path / "data", "endoscopy", num_images=12, size=(64, 64), seed=0)
    overrides = tiny_overrides(tmp_path, datalist=str(datalist))
    training = workflow(TRAIN, "train", **overrides, **{"train#trainer#max_epochs": 1})
    training.run()
    training.finalize()
    evaluation = workflow(EVALUATE, "train", **overrides, predictions_dir=str(tmp_path / "masks elsewhere"))
    evaluation.run()
    evaluation.finalize()

    layout = RunFolder(tmp_path / "eval", tmp_path / "masks elsewhere")
    with open(layout.metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2
    assert sorted(p.name for p in layout.predictions.glob("*_mask.png")) == sorted(
        f"{Path(r['filename']).stem}_mask.png" for r in rows
    )
    assert not RunFolder(tmp_path / "eval").predictions.exists()  # nothing at the default place

    page = _Page(layout.report_html.read_text())
    assert "is missing: evaluate again" not in layout.report_html.read_text()  # every case was found
    shown = [c for c in page.captions if c.startswith(("worst", "best"))]
    assert len(shown) == len(rows)  # 4 worst and 4 best at most, never the same image twice
    dice = {Path(r["filename"]).name: float(r["test_mean_dice"]) for r in rows}
    worst = min(dice, key=dice.get)
    assert shown[0].startswith(f"worst 1: {worst} (Dice {dice[worst]:.4f}")
    summary = json.loads(layout.summary_json.read_text())
    assert summary["metrics"]["test_mean_dice"]["mean"] == pytest.approx(np.mean(list(dice.values())))


def _engine_with(details: dict):
    from ignite.engine import Engine

    engine = Engine(lambda e, b: None)
    engine.state.metric_details = details
    engine.state.metrics = {}
    return engine


def test_each_class_gets_its_own_columns_named_by_class_names(tmp_path):
    import torch

    from segdino_monai.handlers import SegmentationReport
    from segdino_monai.utils.errors import InputError

    dice = torch.tensor([[0.5, float("nan")], [1.0, 0.25]])  # (images, foreground classes)
    report = SegmentationReport(tmp_path, html_report=False, class_names=["benign lesion", "malignant"])
    report._filenames = ["a.png", "b.png"]
    report._write(_engine_with({"test_mean_dice": dice}))
    with open(RunFolder(tmp_path).metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["filename", "test_mean_dice", "test_mean_dice_benign-lesion", "test_mean_dice_malignant"]
    assert [r["test_mean_dice"] for r in rows] == ["0.500000", "0.625000"]  # NaN classes left out of the mean
    assert [r["test_mean_dice_malignant"] for r in rows] == ["nan", "0.250000"]
    summary = json.loads(RunFolder(tmp_path).summary_json.read_text())
    assert summary["classes"] == ["benign-lesion", "malignant"]
    assert summary["metrics"]["test_mean_dice_benign-lesion"]["mean"] == pytest.approx(0.75)

    default = SegmentationReport(tmp_path / "default", html_report=False)
    default._filenames = ["a.png", "b.png"]
    default._write(_engine_with({"test_mean_dice": dice}))
    assert json.loads(RunFolder(tmp_path / "default").summary_json.read_text())["classes"] == ["class1", "class2"]

    wrong = SegmentationReport(tmp_path / "wrong", html_report=False, class_names=["only one"])
    wrong._filenames = ["a.png", "b.png"]
    with pytest.raises(InputError, match="class_names has 1 names"):
        wrong._write(_engine_with({"test_mean_dice": dice}))
    binary = SegmentationReport(tmp_path / "binary", html_report=False)
    binary._filenames = ["a.png", "b.png"]
    binary._write(_engine_with({"test_mean_dice": dice[:, :1]}))
    assert "classes" not in json.loads(RunFolder(tmp_path / "binary").summary_json.read_text())


def test_an_image_repeated_by_a_padding_sampler_is_counted_once(tmp_path):
    import torch

    from segdino_monai.handlers import SegmentationReport

    report = SegmentationReport(tmp_path, html_report=False)
    report._filenames = ["a.png", "b.png", "c.png", "a.png"]  # 3 images on 2 processes, the last batch padded
    report._write(_engine_with({"test_mean_dice": torch.tensor([[0.2], [0.4], [0.9], [0.2]])}))
    with open(RunFolder(tmp_path).metrics_csv, newline="") as f:
        assert [(r["filename"], r["test_mean_dice"]) for r in csv.DictReader(f)] == [
            ("a.png", "0.200000"),
            ("b.png", "0.400000"),
            ("c.png", "0.900000"),
        ]
    summary = json.loads(RunFolder(tmp_path).summary_json.read_text())
    assert summary["num_images"] == 3 and summary["metrics"]["test_mean_dice"]["mean"] == pytest.approx(0.5)
