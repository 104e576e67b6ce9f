"""Active learning strategies ``diversity`` and ``uncertainty``.

``diversity``: the unlabelled image farthest from the labelled ones in backbone features. The pooling, the distance and
the k-center greedy order are :mod:`segdino_monai.apps.monailabel.diversity`'s. The backbone (the served bundle's, from
``train.json`` with the serving overrides) is built on the first request and kept; every image's backbone features are
computed once and cached in ``<feature_cache_dir>`` (one view, no labels). The answer names the chosen image (``id``)
and the first ``count`` images of the order (``ranking``, default 10).

``uncertainty``: the unlabelled image with the highest score of the served model, the score function given by the
app setting ``uncertainty_score`` (``module:function``, called with the class probabilities ``(C, H, W)`` at model
size and the predicted mask ``(C, H, W)`` bool). Scores are computed in a background thread
(:class:`~segdino_monai.apps.monailabel.scores.BackgroundScores`) and kept until the served ``model.pt`` or the
image file changes. A request ranks the images scored so far (``ranking``, ``scores``; ``pending``: how many are
still being scored); when none is scored yet it waits up to ``wait`` seconds (default 60) for them.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import torch
from lib.configs import load_bundle_config
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.strategy import Strategy

from segdino_monai.apps.monailabel.diversity import image_features, k_center_greedy
from segdino_monai.apps.monailabel.scores import BackgroundScores

__all__ = ["Diversity", "Uncertainty", "score_function"]

logger = logging.getLogger(__name__)


class Diversity(Strategy):
    """k-center greedy on pooled backbone features (see :mod:`segdino_monai.apps.monailabel.diversity`).

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


def score_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The function ``module:function`` names; ImportError or AttributeError when it is not there."""
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


class Uncertainty(Strategy):
    """The unlabelled image with the highest score of the served model, scored in the background.

    Args:
        bundle_path: the served bundle copy (its ``models/model.pt`` is the model).
        score: ``score(probabilities, mask) -> float`` for one image.
    """

    def __init__(self, bundle_path: str, score: Callable[[torch.Tensor, torch.Tensor], float]) -> None:
        super().__init__("Unlabelled image where the served model is least sure (scored in the background)")
        self.bundle_path = bundle_path
        self.model_path = os.path.join(bundle_path, "models", "model.pt")
        self.score = score
        self._parts: dict[str, Any] | None = None
        self.scores = BackgroundScores(self._score_image, self._model_version)

    def _model_version(self) -> int | None:
        try:
            return os.stat(self.model_path).st_mtime_ns
        except OSError:
            return None

    def _score_image(self, path: str) -> float:
        """Run the served model on one image (the worker thread alone calls it)."""
        if self._parts is None:
            parser = load_bundle_config(self.bundle_path, os.path.join(self.bundle_path, "configs", "train.json"))
            self._parts = {
                "network": parser.get_parsed_content("network").eval(),
                "transform": parser.get_parsed_content("validate#preprocessing"),
                "threshold": float(parser.get_parsed_content("threshold")),
                "loaded": None,
            }
        parts, version = self._parts, self._model_version()
        if parts["loaded"] != version:
            parts["network"].load_decoder(self.model_path)
            parts["loaded"] = version
        image = parts["transform"]({"image": path})["image"]
        device = next(parts["network"].parameters()).device
        with torch.no_grad():
            logits = parts["network"](torch.as_tensor(image)[None].to(device))[0].float().cpu()
        if logits.shape[0] == 1:
            probabilities = torch.sigmoid(logits)
            mask = probabilities > parts["threshold"]
        else:
            probabilities = torch.softmax(logits, dim=0)
            mask = probabilities.argmax(0) > 0  # any foreground class (channel 0 is the background)
        return float(self.score(probabilities, mask))

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any] | None:
        """The unlabelled image with the highest score (``id``), the scored ones in order, and how many are pending."""
        unlabelled = sorted(datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels")))
        if not unlabelled:
            return None
        images = {datastore.get_image_uri(image): image for image in unlabelled}
        pending = self.scores.update(images)
        ranking = self.scores.ranking(images)
        if not ranking:
            self.scores.wait(float(request.get("wait", 60)))
            ranking, pending = self.scores.ranking(images), self.scores.update(images)
        if not ranking:
            return None
        ranked = [images[path] for path, _ in ranking]
        logger.info("Uncertainty: selected image %s (%d images still being scored)", ranked[0], pending)
        return {
            "id": ranked[0],
            "ranking": ranked[: int(request.get("count", 10))],
            "scores": {images[path]: value for path, value in ranking},
            "pending": pending,
            "model_version": self._model_version(),
        }
