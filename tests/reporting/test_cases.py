from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from segdino_monai.reporting import EvaluatedImage, load_case, metric_label, rank_cases, read_metrics_csv


def test_worst_and_best_cases_never_overlap_and_skip_undefined_values():
    dice = [0.9, math.nan, 0.1, 0.5, 0.7]
    rows = [EvaluatedImage(f"img{i}.png", {"test_mean_dice": d}) for i, d in enumerate(dice)]
    assert rank_cases(rows, "test_mean_dice", 2) == ([2, 3], [0, 4])
    worst, best = rank_cases(rows, "test_mean_dice", 3)
    assert worst == [2, 3, 4] and best == [0]


def test_cases_are_read_back_at_the_scored_size_with_their_classes(tmp_path):
    source = tmp_path / "case.jpg"
    Image.fromarray(np.full((60, 80, 3), 200, np.uint8)).save(source)
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    reference = np.zeros((30, 40), np.uint8)
    reference[5:10, 5:10] = 255  # binary masks are written 0/255
    prediction = np.zeros((30, 40), np.uint8)
    prediction[0:4, 0:4], prediction[20:25, 30:35] = 1, 2  # class indices when there are several classes
    Image.fromarray(reference).save(predictions / "case_label.png")
    Image.fromarray(prediction).save(predictions / "case_mask.png")

    case = load_case(str(source), predictions)

    assert case.image.shape == (30, 40, 3)  # the source resized to the masks (metrics at the model size)
    np.testing.assert_array_equal(case.reference, reference // 255)
    np.testing.assert_array_equal(case.prediction, prediction)
    with pytest.raises(FileNotFoundError, match="other_label.png is missing"):
        load_case(str(tmp_path / "other.jpg"), predictions)


def test_metrics_table_with_a_short_row_names_the_line(tmp_path):
    table = tmp_path / "metrics_per_image.csv"
    table.write_text("filename,test_mean_dice,test_hd95\na.png,0.5,nan\nb.png,0.25\n")
    with pytest.raises(ValueError, match="line 3: 2 columns where the header has 3"):
        read_metrics_csv(table)
    table.write_text("filename,test_mean_dice,test_hd95\na.png,0.5,nan\n")
    names, rows = read_metrics_csv(table)
    assert names == ["test_mean_dice", "test_hd95"] and rows[0].values["test_mean_dice"] == 0.5
    assert math.isnan(rows[0].values["test_hd95"])
    assert [metric_label(n) for n in names] == ["Dice", "HD95 (px)"]
    assert metric_label("val_mean_iou", with_split=True) == "validation IoU"
