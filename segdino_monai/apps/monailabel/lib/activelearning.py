"""Active learning strategy ``diversity``: the unlabelled image farthest from the labelled ones in backbone features.

The pooling, the distance and the k-center greedy order are :mod:`segdino_monai.diversity`'s. The backbone (the
served bundle's, from ``train.json`` with the serving overrides) is built on the first request and kept; every
image's backbone features are computed once and cached in ``<feature_cache_dir>`` (one view, no labels). The
answer names the chosen image (``id``) and the first ``count`` images of the order (``ranking``, default 10).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from lib.configs import load_bundle_config
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from segdino_monai.diversity import image_features, k_center_greedy

__all__ = ["Diversity"]

logger = logging.getLogger(__name__)


class Diversity(Strategy):
    """k-center greedy on pooled backbone features (see :mod:`segdino_monai.diversity`).

    Args:
        bundle_path: the served bundle copy.
    """

    def __init__(self, bundle_path: str) -> None:
        super().__init__("Unlabelled image farthest from the labelled ones (k-center greedy on pooled DINOv3 features)")
        self.bundle_path = bundle_path
        self._lock = threading.Lock()
        self._parts: dict[str, Any] | None = None

    def _setup(self) -> dict[str, Any]:
        if self._parts is None:
            parser = load_bundle_config(self.bundle_path, os.path.join(self.bundle_path, "configs", "train.json"))
            network = parser.get_parsed_content("network").eval()
            self._parts = {
                "network": network,
                "eval_transform": parser.get_parsed_content("validate#preprocessing"),
                "cache_dir": parser.get_parsed_content("feature_cache_dir"),
                "description": parser.get_parsed_content("train#dataset#description"),
            }
        return self._parts

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """The unlabelled image to label next (``id``) and the first ``count`` of the order (``ranking``)."""
        label_tag, labels = request.get("label_tag"), request.get("labels")
        unlabelled = sorted(datastore.get_unlabeled_images(label_tag, labels))
        if not unlabelled:
            return None
        labelled = sorted(datastore.get_labeled_images(label_tag, labels))
        paths = [datastore.get_image_uri(image) for image in labelled + unlabelled]
        with self._lock:  # one backbone, one cache writer
            features = image_features(paths, **self._setup())
        order = k_center_greedy(features[len(labelled) :], features[: len(labelled)], int(request.get("count", 10)))
        ranking = [unlabelled[i] for i in order]
        logger.info("Diversity: selected image %s (then %s)", ranking[0], ranking[1:])
        return {"id": ranking[0], "ranking": ranking}
