from __future__ import annotations

import json
import math

import pytest

from segdino_monai.reporting import read_training_curves
from segdino_monai.utils.errors import InputError


def test_curves_are_the_entries_in_epoch_order_without_undefined_values(tmp_path):
    path = tmp_path / "epoch_metrics.json"
    entries = [
        {"epoch": 2, "loss": 0.5, "metrics": {"train_mean_dice": 0.3, "val_mean_dice": 0.7}},
        {"epoch": 1, "loss": 0.9, "metrics": {"train_mean_dice": 0.1}},
        {"epoch": 3, "loss": math.nan, "metrics": {"train_mean_dice": math.nan, "val_mean_dice": 0.6}},
    ]
    path.write_text(json.dumps({"epochs": entries}))

    curves = read_training_curves(path)

    assert curves.loss == [(1, 0.9), (2, 0.5)]
    assert curves.metrics == {"train_mean_dice": [(1, 0.1), (2, 0.3)], "val_mean_dice": [(2, 0.7), (3, 0.6)]}
    assert curves.best_epoch("val_mean_dice") == (2, 0.7)
    assert curves.best_epoch("val_mean_iou") is None


def test_no_file_gives_empty_curves_and_a_foreign_file_is_named(tmp_path):
    assert not read_training_curves(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"epochs": [{"epoch": 1, "loss": "low"}]}))
    with pytest.raises(InputError, match=f"{tmp_path / 'other.json'} is not an epoch metrics file"):
        read_training_curves(tmp_path / "other.json")
