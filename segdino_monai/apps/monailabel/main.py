"""The SegDINO MONAI Label app: the bundle in ``<app>/model/segdino`` served as model ``segdino``, offline.

Start it with ``segdino label-server --studies <folder or dicom-web URL>``, which lays out the app folder and the
bundle copy; a DICOMweb server is served through ``lib/dicomweb.py``.

Settings (MONAI Label's ``--conf NAME VALUE``, or ``segdino label-server --set NAME=VALUE``): ``retrain_every`` (retrain
after every N new final labels; 0, the default, never), ``retrain_epochs`` (epochs of such a retraining, default 5),
``retrain_val_split`` (its validation share, default 0.2) and ``uncertainty_score`` (the ``uncertainty`` strategy's
score function, default ``segdino_monai.metrics.uncertainty:scalar_uncertainty``; the strategy is listed only where it
imports).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import monailabel
from fastapi import HTTPException
from lib.activelearning import Diversity, Uncertainty, score_function
from lib.configs import serving_overrides
from lib.dicomweb import dicomweb_datastore
from lib.infers import BadImageError, SegDINOInfer
from lib.retraining import RetrainCounter
from lib.trainers import SegDINOTrain
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.async_tasks.utils import tasks
from monailabel.utils.others.generic import strtobool

from segdino_monai.apps.monailabel.settings import app_settings

logger = logging.getLogger(__name__)

MODEL_NAME = "segdino"


class SegDINOApp(MONAILabelApp):
    """MONAI Label app with one model, ``segdino``: inference and training through the bundle's own configs."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self._bundle = os.path.join(app_dir, "model", MODEL_NAME)
        if not os.path.isfile(os.path.join(self._bundle, "configs", "metadata.json")):
            raise FileNotFoundError(
                f"No bundle at {self._bundle}: start the server with `segdino label-server`, which copies the "
                "bundle there (MONAI Label's zoo download is never used)."
            )
        self._settings = app_settings(conf, serving_overrides(self._bundle))  # init_strategies reads them
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"SegDINO - MONAI Label ({monailabel.__version__})",
            description="SegDINO (frozen DINOv3 ViT + tiny decoder) 2D segmentation served from its MONAI bundle",
            version=monailabel.__version__,
        )
        self._retrain = RetrainCounter(int(self._settings["retrain_every"]), self.datastore())

    def _init_dicomweb_datastore(self) -> Datastore:
        """``--studies http(s)://.../dicom-web``: 2D images and SEGs written by our writer (``lib/dicomweb.py``).

        MONAI Label 0.8.5 calls this for a DICOMweb URL (``interfaces/app.py:153``); its own converts series to
        NIfTI and downloads dcmqi from GitHub to write SEGs, neither of which serves 2D images.
        """
        return dicomweb_datastore(self.studies, self._bundle)

    def init_infers(self) -> dict[str, InferTask]:
        """The ``segdino`` inference task (absent, with a warning, while the bundle has no ``models/model.pt``)."""
        task = SegDINOInfer(self._bundle, self.conf)
        if not task.is_valid():
            logger.warning("No trained decoder in %s/models: train, then restart to serve inference", self._bundle)
            return {}
        return {MODEL_NAME: task}

    def init_trainers(self) -> dict[str, TrainTask]:
        """The ``segdino`` training task (unless ``--conf skip_trainers true``)."""
        if strtobool(self.conf.get("skip_trainers", "false")):
            return {}
        task = SegDINOTrain(self._bundle, self.conf)
        return {MODEL_NAME: task} if task.is_valid() else {}

    def init_strategies(self) -> dict[str, Strategy]:
        """Active learning: random, first unlabelled image, diversity, and uncertainty where its score imports."""
        strategies = {"random": Random(), "first": First(), "diversity": Diversity(self._bundle)}
        name = self._settings["uncertainty_score"]
        try:
            strategies["uncertainty"] = Uncertainty(self._bundle, score_function(name))
        except (ImportError, AttributeError) as err:
            logger.info("No uncertainty strategy: its score function %s is not available (%s)", name, err)
        return strategies

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        """After every ``retrain_every`` new final labels, queue a retraining (unless one is already waiting).

        The answer to the label's upload says so: ``{"retraining": "queued"}`` (a new training),
        ``"pending"`` (a training already waiting to start will read this label) or nothing.
        """
        super().on_save_label(image_id, label_id)
        return self._retrain_after(image_id)

    def server_mode(self, mode: bool) -> None:
        """In the server (not in a training subprocess), a person's SEG new in the PACS counts as a saved label."""
        super().server_mode(mode)
        store = self.datastore()
        if mode and hasattr(store, "start_taking"):
            store.start_taking(self._pacs_label)

    def _pacs_label(self, image_id: str) -> None:
        """A person's SEG in the PACS became the final label of ``image_id`` (found by the datastore's listing)."""
        logger.info("New label from the PACS for: %s", image_id)
        self._retrain_after(image_id)

    def _retrain_after(self, image_id: str) -> dict[str, Any]:
        if not self._retrain.label_saved(self.datastore(), image_id) or MODEL_NAME not in self._trainers:
            return {}
        if any(task.get("status") == "SUBMITTED" for task in tasks("train")):
            return {"retraining": "pending"}
        params = {"max_epochs": self._settings["retrain_epochs"], "val_split": self._settings["retrain_val_split"]}
        self.async_training(MODEL_NAME, params={MODEL_NAME: params}, enqueue=True)
        logger.info("retraining %s after %d new final labels", MODEL_NAME, self._retrain.every)
        return {"retraining": "queued"}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """No scoring methods."""
        return {}

    def infer(self, request: dict[str, Any], datastore=None) -> dict[str, Any]:
        """Run inference; unknown models, unknown images and unreadable images are client errors (4xx)."""
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(status_code=404, detail=f"Unknown model {model!r}; available: {sorted(self._infers)}")
        image = request.get("image")
        uploaded = isinstance(image, str) and os.path.isfile(image)  # the endpoint saved an upload to a file
        if isinstance(image, str) and not uploaded:
            store = datastore if datastore else self.datastore()
            if not store.get_image_uri(image):
                raise HTTPException(status_code=404, detail=f"Image {image!r} is not in the datastore")
        try:
            return super().infer(request, datastore)
        except BadImageError as err:
            detail = f"Cannot read the uploaded image: {err.reason}" if uploaded else str(err)
            raise HTTPException(status_code=400, detail=detail) from err
