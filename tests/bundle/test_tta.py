"""The bundle with test-time augmentation and uncertainty on: the evaluation's extra columns, its summary and report,
and the inference's uncertainty maps."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from scipy.stats import spearmanr

from tests.bundle.conftest import CONFIGS, EVALUATE, INFERENCE, tiny_overrides, workflow

PLAIN_COLUMNS = ["filename", "test_mean_dice", "test_mean_iou", "test_hd95"]
TTA_COLUMNS = ["tta_mean_dice", "tta_mean_iou", "tta_hd95"]


def test_evaluation_with_tta_and_uncertainty_reports_their_columns(trained, tmp_path):
    out = tmp_path / "eval"
    overrides = tiny_overrides(trained, output_dir=str(out), tta=True, uncertainty=True)
    flow = workflow(EVALUATE, "train", **overrides)
    flow.run()
    flow.finalize()
    with open(out / "metrics_per_image.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    assert header == PLAIN_COLUMNS + TTA_COLUMNS + ["uncertainty", "tta_uncertainty"]
    assert len(rows) >= 3  # the demo data's test split
    for row in rows:
        for name in ("test_mean_dice", "tta_mean_dice", "uncertainty", "tta_uncertainty"):
            assert 0.0 <= float(row[name]) <= 1.0
    summary = json.loads((out / "metrics_summary.json").read_text())
    for uncertainty, dice in (("uncertainty", "test_mean_dice"), ("tta_uncertainty", "tta_mean_dice")):
        found = summary["uncertainty_vs_dice"][uncertainty]
        expected = spearmanr([float(r[uncertainty]) for r in rows], [float(r[dice]) for r in rows]).statistic
        assert found["dice_column"] == dice and found["n"] == len(rows)
        if np.isnan(expected):  # constant Dice over the images of a two-epoch model
            assert found["spearman"] is None
        else:
            assert found["spearman"] == pytest.approx(expected, abs=1e-6)
        assert summary["metrics"][uncertainty]["mean"] == pytest.approx(
            np.mean([float(r[uncertainty]) for r in rows]), abs=1e-6
        )
    page = (out / "report.html").read_text()
    assert "Uncertainty and Dice" in page and "Spearman" in page and "TTA Dice" in page
    assert (out / "report_files" / "uncertainty.png").is_file()


def test_inference_writes_uncertainty_maps_with_tta(trained, fixtures_dir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for source in sorted((fixtures_dir / "dermoscopy" / "ham10000" / "images").iterdir())[:2]:
        shutil.copy(source, folder / source.name)
    config = [INFERENCE, str(CONFIGS / "dermoscopy.json")]
    outputs = {}
    for tta in (False, True):
        out = tmp_path / f"tta_{tta}"
        extra = {"tta": tta, "uncertainty": tta, "tta_scales": [0.75, 1.0]}
        flow = workflow(
            config, "infer", **tiny_overrides(trained, dataset_dir=str(folder), output_dir=str(out)), **extra
        )
        flow.run()
        outputs[tta] = out
    for source in folder.iterdir():
        assert not (outputs[False] / f"{source.stem}_uncertainty.png").exists()
        mask = np.asarray(Image.open(outputs[True] / f"{source.stem}_mask.png"))
        uncertainty = np.asarray(Image.open(outputs[True] / f"{source.stem}_uncertainty.png"))
        assert uncertainty.dtype == np.uint8 and uncertainty.shape == mask.shape == Image.open(source).size[::-1]
        assert uncertainty.max() > 0
        if 0 < (mask > 0).sum() < mask.size:  # a pixel on the mask's outline is less certain than the mean
            edge = (mask > 0) != np.roll(mask > 0, 1, axis=1)
            assert uncertainty[edge].mean() > uncertainty.mean()
