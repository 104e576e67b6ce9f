"""How the per-image uncertainty relates to Dice: Spearman's rank correlation and a scatter plot.

An evaluation with ``uncertainty=true`` has an ``uncertainty`` column (and ``tta_uncertainty`` with ``tta=true``),
each paired with the Dice of the same prediction (``test_mean_dice``, ``tta_mean_dice``). A useful uncertainty is
high where Dice is low: a negative rank correlation. Spearman's rather than Pearson's: the relation need not be
linear, and a few failed images (Dice 0) would dominate a linear fit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from scipy.stats import spearmanr

from segdino_monai.reporting.figures import metric_label, png

__all__ = ["UncertaintyCorrelation", "uncertainty_correlations", "uncertainty_figure"]

_DICE_OF = {"Uncertainty": "Dice", "TTA uncertainty": "TTA Dice"}


@dataclass
class UncertaintyCorrelation:
    """Spearman's correlation of one uncertainty column with the Dice column of the same prediction.

    Attributes:
        uncertainty: the uncertainty column's name.
        dice: the Dice column's name.
        spearman: Spearman's rho over the images where both are defined (NaN with fewer than 3 images, or when
            either is constant).
        p_value: the two-sided p-value of rho (scipy's).
        n: the images counted.
        points: the ``(uncertainty, dice)`` pairs counted.
    """

    uncertainty: str
    dice: str
    spearman: float
    p_value: float
    n: int
    points: list[tuple[float, float]]

    def as_dict(self) -> dict[str, float | int | str | None]:
        """For the summary JSON (NaN as ``None``)."""
        return {
            "dice_column": self.dice,
            "spearman": None if math.isnan(self.spearman) else self.spearman,
            "p_value": None if math.isnan(self.p_value) else self.p_value,
            "n": self.n,
        }


def uncertainty_correlations(columns: dict[str, Sequence[float]]) -> list[UncertaintyCorrelation]:
    """One entry per uncertainty column that has its Dice column in ``columns`` (name: per-image values)."""
    found = []
    for name, values in columns.items():
        dice_label = _DICE_OF.get(metric_label(name))
        dice = next((n for n in columns if metric_label(n) == dice_label), None)
        if dice is None:
            continue
        points = [
            (float(u), float(d))
            for u, d in zip(values, columns[dice], strict=True)
            if math.isfinite(float(u)) and math.isfinite(float(d))
        ]
        rho, p_value = math.nan, math.nan
        if len(points) >= 3 and len({u for u, _ in points}) > 1 and len({d for _, d in points}) > 1:
            result = spearmanr([u for u, _ in points], [d for _, d in points])
            rho, p_value = float(result.statistic), float(result.pvalue)
        found.append(UncertaintyCorrelation(name, dice, rho, p_value, len(points), points))
    return found


def uncertainty_figure(correlations: Sequence[UncertaintyCorrelation]) -> bytes:
    """One scatter plot per correlation: per-image uncertainty (x) against Dice (y), rho in the title."""
    fig = Figure(figsize=(4.5 * len(correlations), 3.8), layout="constrained")
    axes = fig.subplots(1, len(correlations), squeeze=False)[0]
    for axis, found in zip(axes, correlations, strict=True):
        points = np.asarray(found.points, dtype=float).reshape(-1, 2)
        axis.scatter(points[:, 0], points[:, 1], s=18, color="#4878a8", alpha=0.8, edgecolors="none")
        axis.set(xlabel=f"{metric_label(found.uncertainty)} (mean entropy, 0-1)", ylabel=metric_label(found.dice))
        axis.set_ylim(-0.03, 1.03)
        rho = "n/a" if math.isnan(found.spearman) else f"{found.spearman:.3f}"
        axis.set_title(f"Spearman rho {rho} ({found.n} images)", fontsize=10)
    return png(fig)
