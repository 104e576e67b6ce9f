from __future__ import annotations

from segdino_monai.configs import find_bundle_root
from segdino_monai.engines.feature_cache import (
    CachedFeatureNetwork,
    FeatureCacheDataset,
    training_dataset,
    training_network,
)
from segdino_monai.engines.inference import ImagesSkipped, InferenceSummary, SkippingDataset, skipping_collate
from segdino_monai.engines.resolve import (
    PATCH_SIZE,
    RANDOM_WEIGHTS,
    Datalist,
    check_class_names,
    check_modality,
    check_output_dir,
    check_spatial_size,
    check_splits,
    inference_datalist,
    latest_checkpoint,
    list_images,
    load_datalist,
    require_file,
    resolve_backbone_weights,
    resolve_datalist,
)
from segdino_monai.engines.runner import (
    PRESETS,
    TASKS,
    bundle_workflow,
    check_command_line_ids,
    check_config_ids,
    run_bundle,
)

__all__ = [
    "Datalist",
    "check_class_names",
    "ImagesSkipped",
    "InferenceSummary",
    "SkippingDataset",
    "check_modality",
    "check_output_dir",
    "skipping_collate",
    "CachedFeatureNetwork",
    "FeatureCacheDataset",
    "training_dataset",
    "training_network",
    "PATCH_SIZE",
    "PRESETS",
    "RANDOM_WEIGHTS",
    "TASKS",
    "bundle_workflow",
    "check_command_line_ids",
    "check_config_ids",
    "check_spatial_size",
    "check_splits",
    "find_bundle_root",
    "inference_datalist",
    "latest_checkpoint",
    "list_images",
    "load_datalist",
    "require_file",
    "resolve_backbone_weights",
    "resolve_datalist",
    "run_bundle",
]
