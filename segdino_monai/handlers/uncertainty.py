"""The per-image uncertainty as an evaluation metric: a column of the evaluation table beside Dice, IoU and HD95.

MONAI's metric handlers keep each image's value (``save_details``), which :class:`SegmentationReport` writes to the
per-image CSV; an uncertainty that goes through the same machinery gets its column, its summary and its place in the
report for free. The score is :func:`segdino_monai.metrics.uncertainty.scalar_uncertainty`.
"""

from __future__ import annotations

from collections.abc import Callable

from monai.handlers import IgniteMetricHandler

from segdino_monai.metrics.uncertainty import UncertaintyMetric

__all__ = ["UncertaintyHandler"]


class UncertaintyHandler(IgniteMetricHandler):
    """:class:`UncertaintyMetric` as an Ignite metric (``output_transform`` gives probabilities and mask).

    Args:
        output_transform: the engine output to ``(probabilities, predicted mask)``, e.g.
            ``from_engine(['pred_prob', 'pred'])``.
        save_details: keep each image's value (the evaluation table needs it).
    """

    def __init__(self, output_transform: Callable = lambda x: x, save_details: bool = True) -> None:
        super().__init__(metric_fn=UncertaintyMetric(), output_transform=output_transform, save_details=save_details)
