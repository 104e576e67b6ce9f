"""Three classes end to end on BUSI's colour masks (benign green, malignant red): class colours and names as plain
config values on the command line, ``monai.bundle run training`` and ``evaluating``, per-class metrics checked
against an independent computation on the saved masks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from tests.bundle.conftest import CONFIGS, bundle_run_command, run_command

CLASSES = ("benign", "malignant")
OPTIONS = ["--num_classes", "3", "--class_colors", "[[0,255,0],[255,0,0]]", "--class_names", "['benign','malignant']"]


def _datalist(fixtures: Path, path: Path) -> None:
    """16 training, 4 validation and 6 test images; each split has both classes (BUSI's 21 benign, 9 malignant)."""
    folder = fixtures / "ultrasound" / "busi_rgbmask"
    pairs = [{"image": str(p), "label": str(folder / "masks" / p.name)} for p in sorted((folder / "images").iterdir())]
    benign, malignant = pairs[:21], pairs[21:]
    path.write_text(
        json.dumps(
            {
                "training": benign[:12] + malignant[:4],
                "validation": benign[12:15] + malignant[4:5],
                "test": benign[15:18] + malignant[6:9],
            }
        )
    )


def _class_mask(path: Path) -> np.ndarray:
    """A saved mask as class indices (binary masks are written 0/255, multi-class ones as the indices)."""
    mask = np.asarray(Image.open(path))
    return (mask > 0).astype(np.uint8) if set(np.unique(mask).tolist()) <= {0, 255} else mask


def _hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """95th percentile symmetric Hausdorff distance between the boundaries (pixels), as scipy computes it."""
    if not pred.any() or not truth.any():
        return math.nan
    edges = [m ^ ndimage.binary_erosion(m) for m in (pred, truth)]
    to_truth = ndimage.distance_transform_edt(~edges[1])[edges[0]]
    to_pred = ndimage.distance_transform_edt(~edges[0])[edges[1]]
    return float(max(np.percentile(to_truth, 95), np.percentile(to_pred, 95)))


def _overlap(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice and IoU; a class absent from both scores 1, absent from the truth only 0 (MONAI's ignore_empty=False)."""
    inter, total = float((pred & truth).sum()), float(pred.sum() + truth.sum())
    if not truth.any():
        return (1.0, 1.0) if not pred.any() else (0.0, 0.0)
    return 2 * inter / total, inter / (total - inter)


def test_three_classes_train_and_evaluate_with_per_class_metrics(fixtures_dir, tmp_path):
    datalist = tmp_path / "datalist.json"
    _datalist(fixtures_dir, datalist)
    configs = json.dumps([str(CONFIGS / "train.json"), str(CONFIGS / "ultrasound.json")])
    common = ["--datalist", str(datalist), *OPTIONS]
    train = bundle_run_command(tmp_path, *common, "--train#trainer#max_epochs", "2", config_file=configs)
    result = run_command(train, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    configs = json.dumps([str(CONFIGS / f) for f in ("train.json", "evaluate.json", "ultrasound.json")])
    evaluate = bundle_run_command(
        tmp_path, *common, "--save_predictions", "true", config_file=configs, run_id="evaluating"
    )
    result = run_command(evaluate, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    out = tmp_path / "eval"
    with open(out / "metrics_per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6
    columns = [f"test_{m}_{c}" for m in ("mean_dice", "mean_iou", "hd95") for c in CLASSES]
    assert set(columns) <= set(rows[0])
    truth_classes = set()
    for row in rows:
        stem = out / "predictions" / Path(row["filename"]).stem
        pred, truth = _class_mask(Path(f"{stem}_mask.png")), _class_mask(Path(f"{stem}_label.png"))
        assert pred.shape == truth.shape == np.asarray(Image.open(row["filename"])).shape[:2]  # original size
        truth_classes |= set(np.unique(truth).tolist())
        for index, name in enumerate(CLASSES, start=1):
            dice, iou = _overlap(pred == index, truth == index)
            assert float(row[f"test_mean_dice_{name}"]) == pytest.approx(dice, abs=1e-5)
            assert float(row[f"test_mean_iou_{name}"]) == pytest.approx(iou, abs=1e-5)
            expected = _hd95(pred == index, truth == index)
            got = float(row[f"test_hd95_{name}"])
            assert (math.isnan(expected) and not math.isfinite(got)) or got == pytest.approx(expected, rel=1e-4)
        means = [float(row[f"test_mean_dice_{c}"]) for c in CLASSES]
        assert float(row["test_mean_dice"]) == pytest.approx(np.mean(means), abs=1e-5)  # the mean over the classes
    assert truth_classes == {0, 1, 2}  # both lesion classes were scored
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert summary["classes"] == list(CLASSES)
    for column in columns[:2]:
        values = [float(r[column]) for r in rows]
        assert summary["metrics"][column]["mean"] == pytest.approx(np.mean(values), abs=1e-5)
    report = (out / "report.md").read_text()
    for name in CLASSES:  # the summary table has a row per class and metric, with the class's mean
        for metric, column in (("Dice", "test_mean_dice"), ("IoU", "test_mean_iou")):
            mean = summary["metrics"][f"{column}_{name}"]["mean"]
            assert f"| {metric} ({name}) | {mean:.4f} |" in report
