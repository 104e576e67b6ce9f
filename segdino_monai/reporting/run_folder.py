"""The files of a run folder (``output_dir``): one definition, used by the configs, the handlers and the report.

A training and the evaluation of its model share one folder in the bundle (``<bundle_root>/eval`` by default)::

    output_dir/
        epoch_metrics.json      training: loss and validation metrics per epoch (EpochMetricsJSON)
        tensorboard/            training: TensorBoard logs (for TensorBoard; the report reads epoch_metrics.json)
        predictions/            evaluation: <name>_mask.png and <name>_label.png per image (SaveSegmentationd)
        metrics_per_image.csv   evaluation: one row per image (SegmentationReport)
        metrics_summary.json    evaluation: statistics and what was evaluated (SegmentationReport)
        report.html, report.md, report_files/   the report (write_report)

The predictions folder can live elsewhere (``predictions_dir`` in ``evaluate.json``); whoever reads the masks
must then be given it, hence :attr:`RunFolder.predictions_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunFolder"]


@dataclass(frozen=True)
class RunFolder:
    """The paths of a run folder's files.

    Args:
        root: the run folder (the bundle's ``output_dir``).
        predictions_dir: the folder of the masks when it is not ``<root>/predictions``.

    Example::

        RunFolder("runs/kvasir").metrics_csv  # Path("runs/kvasir/metrics_per_image.csv")
        "$segdino_monai.reporting.RunFolder(@output_dir).predictions"  # in a bundle config
    """

    root: Path
    predictions_dir: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        if self.predictions_dir is not None:
            object.__setattr__(self, "predictions_dir", Path(self.predictions_dir))

    @property
    def predictions(self) -> Path:
        """The folder of the predicted and reference masks."""
        return self.predictions_dir if self.predictions_dir is not None else self.root / "predictions"

    @property
    def metrics_csv(self) -> Path:
        """The per-image metrics table."""
        return self.root / "metrics_per_image.csv"

    @property
    def summary_json(self) -> Path:
        """The evaluation's summary statistics and context."""
        return self.root / "metrics_summary.json"

    @property
    def epoch_metrics(self) -> Path:
        """The training's loss and validation metrics per epoch."""
        return self.root / "epoch_metrics.json"

    @property
    def tensorboard(self) -> Path:
        """The training's TensorBoard logs."""
        return self.root / "tensorboard"

    @property
    def report_html(self) -> Path:
        """The self-contained report page."""
        return self.root / "report.html"

    @property
    def report_md(self) -> Path:
        """The report's markdown twin (its figures in :attr:`report_files`)."""
        return self.root / "report.md"

    @property
    def report_files(self) -> Path:
        """The figures of the markdown report."""
        return self.root / "report_files"

    @property
    def evaluation_files(self) -> list[Path]:
        """What an evaluation writes besides the predictions: the per-image CSV, the summary and both reports."""
        return [self.metrics_csv, self.summary_json, self.report_html, self.report_md, self.report_files]
