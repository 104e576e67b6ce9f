"""The per-image uncertainty as an evaluation metric: a column of the evaluation table beside Dice, IoU and HD95.

MONAI's metric handlers keep each image's value (``save_details``), which :class:`SegmentationReport` writes to the
per-image CSV; an uncertainty that goes through the same machinery gets its column, its summary and its place in the
report for free. The score is :func:`segdino_monai.uncertainty.scalar_uncertainty`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from segdino_monai.uncertainty import scalar_uncertainty

__all__ = ["UncertaintyHandler", "UncertaintyMetric"]


class UncertaintyMetric(CumulativeIterationMetric):
    """Each image's mean entropy over its predicted object and border band (:func:`scalar_uncertainty`).

    Called as ``metric(y_pred=probabilities, y=predicted_mask)``: the probabilities ``(B, C, H, W)`` before the
    threshold, and the mask they were thresholded to, ``(B, 1, H, W)`` or one-hot ``(B, C, H, W)`` (channel 0 the
    background when ``C > 1``), so that the object is the one the evaluation scored.
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """One value per image, ``(B, 1)``."""
        if y is None:
            masks = [None] * y_pred.shape[0]
        else:
            masks = [m[0] if m.shape[0] == 1 else m[1:].sum(dim=0) for m in y]
        values = [scalar_uncertainty(p, mask) for p, mask in zip(y_pred, masks, strict=True)]
        return torch.tensor(values, dtype=torch.float32, device=y_pred.device)[:, None]

    def aggregate(self) -> torch.Tensor:
        """The mean over the images."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("the uncertainty buffer is empty: no image was scored")
        return do_metric_reduction(data, MetricReduction.MEAN)[0]


class UncertaintyHandler(IgniteMetricHandler):
    """:class:`UncertaintyMetric` as an Ignite metric (``output_transform`` gives probabilities and mask).

    Args:
        output_transform: the engine output to ``(probabilities, predicted mask)``, e.g.
            ``from_engine(['pred_prob', 'pred'])``.
        save_details: keep each image's value (the evaluation table needs it).
    """

    def __init__(self, output_transform: Callable = lambda x: x, save_details: bool = True) -> None:
        super().__init__(metric_fn=UncertaintyMetric(), output_transform=output_transform, save_details=save_details)
