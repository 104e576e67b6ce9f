"""Bundle plumbing: config checks, the feature cache, inference accounting, running a bundle config.

What the bundle configs call (``segdino_monai.workflows.check_spatial_size(...)`` after ``$import segdino_monai``)
is exported here.
"""

from __future__ import annotations

from segdino_monai.workflows.checks import (
    check_class_names,
    check_modality,
    check_spatial_size,
    latest_checkpoint,
    require_file,
)
from segdino_monai.workflows.configs import find_bundle_root
from segdino_monai.workflows.feature_cache import (
    CachedFeatureNetwork,
    FeatureCacheDataset,
    training_dataset,
    training_network,
)
from segdino_monai.workflows.inference import ImagesSkipped, InferenceSummary, SkippingDataset, skipping_collate
from segdino_monai.workflows.runner import (
    PRESETS,
    TASKS,
    bundle_workflow,
    check_command_line_ids,
    check_config_ids,
    run_bundle,
)

__all__ = [
    "check_class_names",
    "ImagesSkipped",
    "InferenceSummary",
    "SkippingDataset",
    "check_modality",
    "skipping_collate",
    "CachedFeatureNetwork",
    "FeatureCacheDataset",
    "training_dataset",
    "training_network",
    "PRESETS",
    "TASKS",
    "bundle_workflow",
    "check_command_line_ids",
    "check_config_ids",
    "check_spatial_size",
    "find_bundle_root",
    "latest_checkpoint",
    "require_file",
    "run_bundle",
]
