"""DINOv3 weights: which file to load, Meta's and Hugging Face's layouts, content hashes, safe loading."""

from __future__ import annotations

from segdino_monai.networks.weights.resolve import RANDOM_WEIGHTS, resolve_backbone_weights

__all__ = ["RANDOM_WEIGHTS", "resolve_backbone_weights"]
