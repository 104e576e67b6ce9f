"""Metrics: the segmentation uncertainty score (entropy maths and its cumulative MONAI metric)."""

from __future__ import annotations

from segdino_monai.metrics.uncertainty import BORDER_BAND, UncertaintyMetric, entropy_map, scalar_uncertainty

__all__ = ["BORDER_BAND", "UncertaintyMetric", "entropy_map", "scalar_uncertainty"]
