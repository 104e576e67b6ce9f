"""Training: the bundle's ``train.json`` on the datastore's labelled images, with the serving overrides.

With ``feature_cache`` on (the app's default, see :func:`segdino_monai.apps.monailabel.server.prepare_app`) training
and validation both read the backbone features from the cache in the app folder: an image's features are computed
the first time it is used, by whichever split, and every later retraining runs the decoder only. Each training
appends one line to ``<app>/trainings.jsonl`` (:data:`TRAININGS_FILE`): its duration, the split sizes and how many
cached views it computed and reused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import monai.bundle
from lib.configs import config_files, load_bundle_config
from monailabel.tasks.train.bundle import BundleTrainTask

from segdino_monai.utils.errors import InputError
from segdino_monai.utils.options import as_bool

__all__ = ["TRAININGS_FILE", "SegDINOTrain"]

logger = logging.getLogger(__name__)

TRAININGS_FILE = "trainings.jsonl"


class SegDINOTrain(BundleTrainTask):
    """The bundle's training as a MONAI Label task.

    Differences from ``BundleTrainTask``: the served copy's ``configs/monailabel.json`` overrides are merged (the
    backbone weights file, test-size networks), the run is not the bundle's demo (no generated dataset),
    ``model.pt`` (best validation Dice) lands in the served copy's ``models/``, which inference reloads, validation
    reads view 0 of the feature cache when training does, and every run is recorded in ``trainings.jsonl``.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(path, conf, load_strict=True, **kwargs)
        self.feature_cache = self.is_valid() and as_bool(
            self.bundle_config.get_parsed_content("feature_cache"), "feature_cache"
        )

    def _load_bundle_config(self, path, config):
        return load_bundle_config(path, config, self.const.key_bundle_root())

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        overrides["demo"] = False  # the datastore's images, never the generated demo dataset
        overrides["ckpt_dir"] = f"{self.bundle_path}/models"
        validation = self.const.key_validate_dataset_data()
        own_validation = validation not in overrides  # the request's val_split < 0
        if own_validation and not (self.bundle_config.get("datalist") or self.bundle_config.get("dataset_dir")):
            raise InputError(
                "val_split < 0 asks for the bundle's own validation set, but the served bundle names none: pass "
                "val_split >= 0, or start the server with --set datalist=<datalist JSON>."
            )
        if self.feature_cache:
            # validation from the training cache's deterministic view: the same files, so no backbone pass for an
            # image cached by an earlier training, whichever split it was in (all its views are built once)
            overrides["validate#dataset"] = {
                "_target_": "segdino_monai.workflows.FeatureCacheDataset",
                "data": overrides.pop(validation, "$@datalist_source.load(@val_split, 'validation')"),
                "network": "@train#dataset#network",
                "eval_transform": "@train#dataset#eval_transform",
                "train_transform": "@train#dataset#transform",
                "cache_dir": "@train#dataset#cache_dir",
                "num_views": "@train#dataset#num_views",
                "description": "@train#dataset#description",
                "progress": False,
                "view": 0,
            }
            overrides["validate#evaluator#network"] = "$segdino_monai.workflows.training_network(@network, True)"
        return overrides

    def run_single_gpu(self, request: dict[str, Any], overrides: dict[str, Any]) -> None:
        """Run the bundle's training with the overrides file merged after ``train.json``; record the run."""
        start = time.time()
        workflow = monai.bundle.create_workflow(
            run_id=request.get("run_id", "run"),
            init_id=None,
            final_id=None,
            meta_file=self.bundle_metadata_path,
            config_file=config_files(self.bundle_path, self.bundle_config_path),
            logging_file=f"{self.bundle_path}/configs/logging.conf",
            **overrides,
        )
        workflow.run()
        datasets = [workflow.parser.get_parsed_content(f"{part}#dataset") for part in ("train", "validate")]
        workflow.finalize()
        record = {
            "start": start,
            "seconds": round(time.time() - start, 3),
            "max_epochs": overrides.get(self.const.key_train_trainer_max_epochs()),
            "train_images": len(datasets[0]),
            "validation_images": len(datasets[1]),
            "feature_cache": self.feature_cache,
            "views_computed": sum(getattr(d, "computed", 0) for d in datasets) if self.feature_cache else None,
            "views_reused": sum(getattr(d, "reused", 0) for d in datasets) if self.feature_cache else None,
        }
        path = os.path.join(os.path.dirname(os.path.dirname(self.bundle_path)), TRAININGS_FILE)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        logger.info("training recorded in %s: %s", path, record)
