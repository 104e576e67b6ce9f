"""The report's uncertainty-vs-Dice statistics: columns paired by prediction, Spearman's rho as scipy computes it."""

from __future__ import annotations

import math

import pytest
from scipy.stats import spearmanr

from segdino_monai.reporting import metric_label
from segdino_monai.reporting.uncertainty import uncertainty_correlations, uncertainty_figure


def test_each_uncertainty_is_paired_with_the_dice_of_its_prediction():
    columns = {
        "test_mean_dice": [0.9, 0.2, 0.5, math.nan, 0.7],
        "tta_mean_dice": [0.8, 0.3, 0.6, 0.1, 0.7],
        "test_hd95": [1.0, 9.0, 4.0, math.nan, 2.0],
        "uncertainty": [0.1, 0.6, 0.2, 0.9, 0.4],
        "tta_uncertainty": [0.2, 0.5, 0.3, 0.8, 0.1],
    }
    found = {c.uncertainty: c for c in uncertainty_correlations(columns)}
    assert {name: c.dice for name, c in found.items()} == {
        "uncertainty": "test_mean_dice",
        "tta_uncertainty": "tta_mean_dice",
    }
    plain = found["uncertainty"]
    assert plain.n == 4  # the image without a Dice is left out
    expected = spearmanr([0.1, 0.6, 0.2, 0.4], [0.9, 0.2, 0.5, 0.7])
    assert plain.spearman == pytest.approx(expected.statistic) and plain.p_value == pytest.approx(expected.pvalue)
    assert plain.spearman == pytest.approx(-0.8)
    assert found["tta_uncertainty"].as_dict()["spearman"] == pytest.approx(
        spearmanr(columns["tta_uncertainty"], columns["tta_mean_dice"]).statistic
    )
    assert uncertainty_figure(list(found.values())).startswith(b"\x89PNG")
    assert [metric_label(n) for n in columns] == ["Dice", "TTA Dice", "HD95 (px)", "Uncertainty", "TTA uncertainty"]


def test_undefined_correlations_are_none_in_the_summary():
    constant = uncertainty_correlations({"test_mean_dice": [0.0, 0.0, 0.0], "uncertainty": [0.1, 0.2, 0.3]})[0]
    assert math.isnan(constant.spearman) and constant.as_dict()["spearman"] is None
    assert uncertainty_correlations({"test_mean_dice": [0.5], "test_mean_iou": [0.4]}) == []  # no uncertainty column
