from __future__ import annotations

from segdino_monai.networks.blocks.feature_aligner import FeatureAligner
from segdino_monai.networks.blocks.mlp_decoder import MLPDecoder

__all__ = ["FeatureAligner", "MLPDecoder"]
