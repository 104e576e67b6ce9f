from __future__ import annotations

from segdino_monai.networks.blocks import FeatureAligner, MLPDecoder
from segdino_monai.networks.nets import DINOV3_ARCHS, DINOv3Backbone, OnnxRuntimeNetwork, SegDINO, default_taps

__all__ = [
    "DINOV3_ARCHS",
    "DINOv3Backbone",
    "FeatureAligner",
    "MLPDecoder",
    "OnnxRuntimeNetwork",
    "SegDINO",
    "default_taps",
]
