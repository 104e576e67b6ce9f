"""Ignite handlers of the bundle's workflows: checkpoints, the evaluation report, per-epoch metrics, loading."""

from __future__ import annotations

from segdino_monai.handlers.best_model_saver import BestModelSaver
from segdino_monai.handlers.decoder_loader import DecoderLoader
from segdino_monai.handlers.metrics_json import EpochMetricsJSON
from segdino_monai.handlers.quiet_stop import QuietStop
from segdino_monai.handlers.resumable_checkpoint import ResumableCheckpoint
from segdino_monai.handlers.segmentation_report import SegmentationReport
from segdino_monai.handlers.tracking import track_files
from segdino_monai.handlers.uncertainty import UncertaintyHandler
from segdino_monai.metrics.uncertainty import UncertaintyMetric

__all__ = [
    "BestModelSaver",
    "DecoderLoader",
    "EpochMetricsJSON",
    "QuietStop",
    "ResumableCheckpoint",
    "SegmentationReport",
    "UncertaintyHandler",
    "UncertaintyMetric",
    "track_files",
]
