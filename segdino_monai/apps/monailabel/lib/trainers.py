"""Training: the bundle's ``train.json`` on the datastore's labelled images, with the serving overrides."""

from __future__ import annotations

import logging
from typing import Any

import monai.bundle
from lib.configs import config_files, load_bundle_config
from monailabel.tasks.train.bundle import BundleTrainTask

from segdino_monai.errors import InputError

__all__ = ["SegDINOTrain"]

logger = logging.getLogger(__name__)


class SegDINOTrain(BundleTrainTask):
    """The bundle's training as a MONAI Label task.

    Differences from ``BundleTrainTask``: the served copy's ``configs/monailabel.json`` overrides are merged (the
    backbone weights file, test-size networks), the run is not the bundle's demo (no generated dataset), and
    ``model.pt`` (best validation Dice) lands in the served copy's ``models/``, which inference reloads.
    """

    def __init__(self, path: str, conf: dict[str, str], **kwargs: Any) -> None:
        super().__init__(path, conf, load_strict=True, **kwargs)

    def _load_bundle_config(self, path, config):
        return load_bundle_config(path, config, self.const.key_bundle_root())

    def _update_overrides(self, overrides: dict[str, Any]) -> dict[str, Any]:
        overrides["demo"] = False  # the datastore's images, never the generated demo dataset
        overrides["ckpt_dir"] = f"{self.bundle_path}/models"
        own_validation = self.const.key_validate_dataset_data() not in overrides  # the request's val_split < 0
        if own_validation and not (self.bundle_config.get("datalist") or self.bundle_config.get("dataset_dir")):
            raise InputError(
                "val_split < 0 asks for the bundle's own validation set, but the served bundle names none: pass "
                "val_split >= 0, or start the server with --set datalist=<datalist JSON>."
            )
        return overrides

    def run_single_gpu(self, request: dict[str, Any], overrides: dict[str, Any]) -> None:
        """Run the bundle's training with the overrides file merged after ``train.json``."""
        monai.bundle.run(
            run_id=request.get("run_id", "run"),
            init_id=None,
            final_id=None,
            meta_file=self.bundle_metadata_path,
            config_file=config_files(self.bundle_path, self.bundle_config_path),
            logging_file=f"{self.bundle_path}/configs/logging.conf",
            **overrides,
        )
