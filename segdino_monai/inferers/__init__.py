"""Inferers: test-time augmentation over flipped and rescaled views."""

from __future__ import annotations

from segdino_monai.inferers.tta import FLIPS, TTAInferer, TTAPredictiond

__all__ = ["FLIPS", "TTAInferer", "TTAPredictiond"]
