"""SegmentationReport through the bundle: the report finds the masks where the evaluation wrote them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from segdino_monai.data.demo import make_demo_dataset
from segdino_monai.reporting import RunLayout
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

    layout = RunLayout(tmp_path / "eval", tmp_path / "masks elsewhere")
    with open(layout.metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2
    assert sorted(p.name for p in layout.predictions.glob("*_mask.png")) == sorted(
        f"{Path(r['filename']).stem}_mask.png" for r in rows
    )
    assert not RunLayout(tmp_path / "eval").predictions.exists()  # nothing at the default place

    page = _Page(layout.report_html.read_text())
    assert "is missing: evaluate again" not in layout.report_html.read_text()  # every case was found
    shown = [c for c in page.captions if c.startswith(("worst", "best"))]
    assert len(shown) == len(rows)  # 4 worst and 4 best at most, never the same image twice
    dice = {Path(r["filename"]).name: float(r["test_mean_dice"]) for r in rows}
    worst = min(dice, key=dice.get)
    assert shown[0].startswith(f"worst 1: {worst} (Dice {dice[worst]:.4f}")
    summary = json.loads(layout.summary_json.read_text())
    assert summary["metrics"]["test_mean_dice"]["mean"] == pytest.approx(np.mean(list(dice.values())))
