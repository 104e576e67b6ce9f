"""Config files of the served bundle: the bundle's own, its modality's, then the serving overrides."""

from __future__ import annotations

import json
import os
from typing import Any

from monai.bundle import ConfigParser

__all__ = ["OVERRIDES_FILE", "config_files", "load_bundle_config", "serving_overrides"]

OVERRIDES_FILE = "monailabel.json"


def config_files(bundle_path: str, config_path: str) -> list[str]:
    """The bundle config file, then the modality's and the overrides file ``monailabel.json``, where there is one.

    The modality's file, ``configs/<modality>.json``, holds the pipeline steps of the ``modality`` the overrides name.
    """
    overrides = os.path.join(bundle_path, "configs", OVERRIDES_FILE)
    if not os.path.isfile(overrides):
        return [config_path]
    with open(overrides, encoding="utf-8") as f:
        modality = json.load(f).get("modality")
    return [config_path, *([os.path.join(bundle_path, "configs", f"{modality}.json")] if modality else []), overrides]


def load_bundle_config(bundle_path: str, config_path: str, bundle_root_key: str = "bundle_root") -> ConfigParser:
    """Read the config with the overrides merged (``#`` ids update nested items) and ``bundle_root`` set."""
    parser = ConfigParser()
    parser.read_config(config_files(bundle_path, config_path))
    parser.config.update({bundle_root_key: bundle_path})  # type: ignore[union-attr]
    return parser


def serving_overrides(bundle_path: str) -> dict[str, Any]:
    """The served copy's overrides file (``--set`` of ``segdino label-server``); empty where there is none."""
    path = os.path.join(bundle_path, "configs", OVERRIDES_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)
