from __future__ import annotations

from segdino_monai.networks.blocks.feature_aligner import FeatureAligner
from segdino_monai.networks.blocks.folded_head import FoldedLinearHead, is_foldable
from segdino_monai.networks.blocks.mlp_decoder import MLPDecoder

__all__ = ["FeatureAligner", "FoldedLinearHead", "MLPDecoder", "is_foldable"]
