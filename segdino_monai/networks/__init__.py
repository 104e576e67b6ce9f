from __future__ import annotations

from segdino_monai.networks.blocks import FeatureAligner, MLPDecoder
from segdino_monai.networks.nets import DINOV3_ARCHS, DINOv3Backbone, OnnxRuntimeNetwork, SegDINO, default_taps
from segdino_monai.networks.weights import RANDOM_WEIGHTS, resolve_backbone_weights

__all__ = [
    "DINOV3_ARCHS",
    "DINOv3Backbone",
    "FeatureAligner",
    "MLPDecoder",
    "OnnxRuntimeNetwork",
    "RANDOM_WEIGHTS",
    "SegDINO",
    "default_taps",
    "resolve_backbone_weights",
]
