from __future__ import annotations

from segdino_monai.engines.checkpoint import ResumableCheckpoint
from segdino_monai.engines.feature_cache import CachedFeatureNetwork, FeatureCacheDataset, training_dataset
from segdino_monai.engines.inference import ImagesSkipped, InferenceSummary, SkippingDataset, skipping_collate
from segdino_monai.engines.report import SegmentationReport, summarise
from segdino_monai.engines.resolve import (
    RANDOM_WEIGHTS,
    check_output_dir,
    find_bundle_root,
    inference_datalist,
    latest_checkpoint,
    list_images,
    require_file,
    resolve_backbone_weights,
    resolve_datalist,
)
from segdino_monai.engines.runner import PRESETS, TASKS, bundle_workflow, run_bundle

__all__ = [
    "ImagesSkipped",
    "InferenceSummary",
    "SkippingDataset",
    "check_output_dir",
    "skipping_collate",
    "CachedFeatureNetwork",
    "FeatureCacheDataset",
    "training_dataset",
    "PRESETS",
    "RANDOM_WEIGHTS",
    "ResumableCheckpoint",
    "SegmentationReport",
    "TASKS",
    "bundle_workflow",
    "find_bundle_root",
    "inference_datalist",
    "latest_checkpoint",
    "list_images",
    "require_file",
    "resolve_backbone_weights",
    "resolve_datalist",
    "run_bundle",
    "summarise",
]
