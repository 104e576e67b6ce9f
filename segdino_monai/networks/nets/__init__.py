from __future__ import annotations

from segdino_monai.networks.nets.dinov3_backbone import DINOV3_ARCHS, DINOv3Backbone, default_taps
from segdino_monai.networks.nets.onnx_runtime import OnnxRuntimeNetwork
from segdino_monai.networks.nets.segdino import SegDINO

__all__ = ["DINOV3_ARCHS", "DINOv3Backbone", "OnnxRuntimeNetwork", "SegDINO", "default_taps"]
