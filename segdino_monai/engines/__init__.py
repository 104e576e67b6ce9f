from __future__ import annotations

from segdino_monai.engines.checkpoint import ResumableCheckpoint
from segdino_monai.engines.report import SegmentationReport, summarise
from segdino_monai.engines.resolve import (
    RANDOM_WEIGHTS,
    find_bundle_root,
    inference_datalist,
    latest_checkpoint,
    list_images,
    require_file,
    resolve_backbone_weights,
    resolve_datalist,
)

__all__ = [
    "RANDOM_WEIGHTS",
    "ResumableCheckpoint",
    "SegmentationReport",
    "find_bundle_root",
    "inference_datalist",
    "latest_checkpoint",
    "list_images",
    "require_file",
    "resolve_backbone_weights",
    "resolve_datalist",
    "summarise",
]
