from __future__ import annotations

from segdino_monai.engines.report import SegmentationReport, summarise
from segdino_monai.engines.resolve import (
    RANDOM_WEIGHTS,
    find_bundle_root,
    latest_checkpoint,
    list_images,
    resolve_backbone_weights,
    resolve_datalist,
)

__all__ = [
    "RANDOM_WEIGHTS",
    "SegmentationReport",
    "find_bundle_root",
    "latest_checkpoint",
    "list_images",
    "resolve_backbone_weights",
    "resolve_datalist",
    "summarise",
]
