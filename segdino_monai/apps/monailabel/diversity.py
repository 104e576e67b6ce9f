"""Diversity for active learning: which unlabelled image is farthest, in backbone features, from those labelled.

Each image is described by its *pooled features*: the frozen backbone's features of the image's deterministic view
(the validation preprocessing, as cached by :class:`~segdino_monai.workflows.FeatureCacheDataset`), averaged over the
patch grid for each tapped layer, each layer's mean vector scaled to unit L2 norm, the layers concatenated and the
whole divided by the square root of the number of layers (a unit vector in which every layer weighs the same).
The distance between two images is the Euclidean distance between their pooled features (``sqrt(2 - 2 cos)``, with
``cos`` the mean over layers of the cosine similarity of the layer means).

The order is k-center greedy (Sener and Savarese, 2018): the next image is the unlabelled one whose distance to its
nearest labelled or already chosen image is largest; with nothing labelled, the first is the image farthest from
the unlabelled images' mean. Ties go to the lower index.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Transform
from torch import nn

from segdino_monai.workflows.feature_cache import FeatureCacheDataset

__all__ = ["image_features", "k_center_greedy", "pool_features"]

logger = logging.getLogger(__name__)


def pool_features(features: torch.Tensor) -> torch.Tensor:
    """Pooled features (see the module docstring) of ``(..., taps, C, h, w)`` backbone features: ``(..., taps*C)``."""
    means = features.float().mean(dim=(-2, -1))
    means = nn.functional.normalize(means, dim=-1) / math.sqrt(means.shape[-2])
    return means.flatten(-2)


def k_center_greedy(candidates: torch.Tensor, centers: torch.Tensor, count: int | None = None) -> list[int]:
    """Indices of ``candidates`` ``(m, d)`` in k-center greedy order away from ``centers`` ``(n, d)`` (n may be 0).

    Args:
        candidates: pooled features of the unlabelled images.
        centers: pooled features of the labelled images.
        count: how many to order (default: all).
    """
    count = len(candidates) if count is None else min(count, len(candidates))
    if count <= 0:
        return []
    candidates = candidates.double()
    order: list[int] = []
    if len(centers):
        nearest = torch.cdist(candidates, centers.double()).min(dim=1).values
    else:  # the mean decides the first pick only; it is no center
        order.append(int(torch.argmax(torch.cdist(candidates, candidates.mean(dim=0, keepdim=True))[:, 0])))
        nearest = torch.cdist(candidates, candidates[order])[:, 0]
        nearest[order] = -1.0
    while len(order) < count:
        pick = int(torch.argmax(nearest))
        order.append(pick)
        nearest = torch.minimum(nearest, torch.cdist(candidates, candidates[pick : pick + 1])[:, 0])
        nearest[order] = -1.0  # chosen: never again
    return order


def image_features(
    images: Sequence[str | Path],
    network: nn.Module,
    eval_transform: Transform,
    cache_dir: str | Path,
    description: Mapping[str, Any] | None = None,
    batch_size: int = 8,
) -> torch.Tensor:
    """Pooled features ``(len(images), taps*C)`` of image files, their backbone features cached in ``cache_dir``.

    The backbone runs only for images not cached yet (or changed since); the cache is a one-view
    :class:`~segdino_monai.workflows.FeatureCacheDataset` of the images alone (no labels), so labelling an image
    does not invalidate it.
    """
    data = [{"image": str(path)} for path in images]
    dataset = FeatureCacheDataset(
        data, network, eval_transform, None, cache_dir, 1, description, batch_size=batch_size, progress=False
    )
    if dataset.computed:
        logger.info("diversity: computed the backbone features of %d images", dataset.computed)
    if not data:
        return torch.zeros(0, 0)
    return torch.stack([pool_features(dataset[i]["image"]) for i in range(len(dataset))])
