"""Config files of the served bundle: the bundle's own, then the serving overrides ``configs/monailabel.json``."""

from __future__ import annotations

import os

from monai.bundle import ConfigParser

__all__ = ["OVERRIDES_FILE", "config_files", "load_bundle_config"]

OVERRIDES_FILE = "monailabel.json"


def config_files(bundle_path: str, config_path: str) -> list[str]:
    """The bundle config file followed by the overrides file when the served copy has one."""
    overrides = os.path.join(bundle_path, "configs", OVERRIDES_FILE)
    return [config_path, overrides] if os.path.isfile(overrides) else [config_path]


def load_bundle_config(bundle_path: str, config_path: str, bundle_root_key: str = "bundle_root") -> ConfigParser:
    """Read the config with the overrides merged (``#`` ids update nested items) and ``bundle_root`` set."""
    parser = ConfigParser()
    parser.read_config(config_files(bundle_path, config_path))
    parser.config.update({bundle_root_key: bundle_path})  # type: ignore[union-attr]
    return parser
