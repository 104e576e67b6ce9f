"""Evaluation reports: an HTML page (and its markdown twin) with metrics, distributions, cases and training curves."""

from __future__ import annotations

from segdino_monai.reporting.cases import CaseImages, EvaluatedImage, load_case, rank_cases, read_metrics_csv
from segdino_monai.reporting.curves import TrainingCurves, read_training_curves
from segdino_monai.reporting.figures import case_figure, curves_figure, distributions_figure, metric_label
from segdino_monai.reporting.page import write_report
from segdino_monai.reporting.run_folder import RunFolder
from segdino_monai.reporting.summary import summarise

__all__ = [
    "CaseImages",
    "EvaluatedImage",
    "RunFolder",
    "TrainingCurves",
    "case_figure",
    "curves_figure",
    "distributions_figure",
    "load_case",
    "metric_label",
    "rank_cases",
    "read_metrics_csv",
    "read_training_curves",
    "summarise",
    "write_report",
]
