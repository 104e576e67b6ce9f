"""Per-pixel and per-image uncertainty of a segmentation from its (test-time averaged) probabilities.

The per-pixel uncertainty is the **predictive entropy** of the probabilities, **normalised to [0, 1]**: 0 where the
model is certain, 1 where every outcome is equally likely.

- One channel (``C == 1``, the foreground probability ``p``): the binary entropy
  ``H = -(p ln p + (1 - p) ln(1 - p)) / ln 2``, 1 at ``p = 0.5``.
- Several channels (``C > 1``, class probabilities summing to 1 over the channels, background included): the
  categorical entropy ``H = -sum_c p_c ln p_c / ln C``, 1 when all ``C`` classes are equally likely.

``0 ln 0`` is taken as 0. With test-time augmentation (:class:`segdino_monai.inferers.TTAInferer`), the probabilities
are the average over the views, so the entropy grows both where each view is unsure and where the views disagree.

The per-image score (:func:`scalar_uncertainty`) is the mean entropy inside the predicted object and its border band,
the pixels within ``band`` pixels (chessboard distance) of the object: the background far from any object is nearly
always certain, and averaging over it would mostly measure the object's size. For an empty prediction it is the mean
over the whole image (an image where nothing was found but something was nearly found still scores above 0).
"""

from __future__ import annotations

import math

import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.transforms.utils_morphological_ops import dilate
from monai.utils import MetricReduction

__all__ = ["BORDER_BAND", "UncertaintyMetric", "entropy_map", "scalar_uncertainty"]

BORDER_BAND = 5
"""Width in pixels of the border band around the predicted object that :func:`scalar_uncertainty` averages over."""


def entropy_map(probs: torch.Tensor) -> torch.Tensor:
    """The normalised predictive entropy of each pixel (see the module documentation).

    Args:
        probs: probabilities, ``(B, C, H, W)`` or ``(C, H, W)``; ``C == 1`` is the foreground probability of a binary
            model, ``C > 1`` class probabilities summing to 1 over ``C``.

    Returns:
        The entropy in ``[0, 1]``, ``(B, 1, H, W)`` or ``(1, H, W)`` (as ``probs``), float32 or float64 as ``probs``
        (float32 for other types).

    Raises:
        ValueError: ``probs`` is not 3-D or 4-D.
    """
    if probs.ndim not in (3, 4):
        raise ValueError(f"entropy_map expects probabilities (B, C, H, W) or (C, H, W), got shape {tuple(probs.shape)}")
    dtype = probs.dtype if probs.dtype in (torch.float32, torch.float64) else torch.float32
    p = torch.as_tensor(probs).to(dtype).clamp(0.0, 1.0)
    channel_dim = probs.ndim - 3
    if p.shape[channel_dim] == 1:
        p = torch.cat([p, 1.0 - p], dim=channel_dim)
        classes = 2
    else:
        classes = p.shape[channel_dim]
    # xlogy: 0 * log(0) = 0
    entropy = -torch.special.xlogy(p, p).sum(dim=channel_dim, keepdim=True)
    return (entropy / math.log(classes)).clamp(0.0, 1.0)


def scalar_uncertainty(probs: torch.Tensor, mask: torch.Tensor | None = None, band: int = BORDER_BAND) -> float:
    """One image's uncertainty: the mean normalised entropy over the predicted object and its border band.

    Args:
        probs: one image's probabilities, ``(C, H, W)`` or ``(1, C, H, W)`` (as for :func:`entropy_map`).
        mask: the predicted object, ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)``: non-zero pixels (any foreground
            class) are the object. Default: the object from ``probs`` (foreground probability above 0.5 for one
            channel, the most probable class not the background, channel 0, otherwise).
        band: width in pixels of the border band around the object (:data:`BORDER_BAND`).

    Returns:
        The mean entropy in ``[0, 1]`` over the object dilated by ``band`` pixels; over the whole image when the
        object is empty.

    Raises:
        ValueError: ``probs`` holds more than one image, or ``mask`` does not have the image's size.
    """
    if probs.ndim == 4:
        if probs.shape[0] != 1:
            raise ValueError(f"scalar_uncertainty scores one image, got a batch of {probs.shape[0]}")
        probs = probs[0]
    entropy = entropy_map(probs)[0]
    if mask is None:
        found = probs[0] > 0.5 if probs.shape[0] == 1 else probs.argmax(dim=0) > 0
    else:
        found = torch.as_tensor(mask, device=probs.device)
        if found.shape[-2:] != entropy.shape or found.numel() != entropy.numel():
            raise ValueError(f"mask of shape {tuple(mask.shape)} for probabilities of size {tuple(entropy.shape)}")
        found = found.reshape(entropy.shape) != 0
    if not bool(found.any()):
        return float(entropy.mean())
    region = dilate(found[None, None].float(), filter_size=2 * band + 1)[0, 0] > 0 if band > 0 else found
    return float(entropy[region].mean())


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
