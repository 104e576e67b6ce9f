"""Model-zoo style helpers: the bundle's configs run through ConfigWorkflow with tiny overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigWorkflow

from tests.conftest import TINY_VIT

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
EVALUATE = [TRAIN, str(CONFIGS / "evaluate.json")]
INFERENCE = str(CONFIGS / "inference.json")


def tiny_overrides(work: Path, **extra) -> dict:
    """A random tiny DINOv3, 64x64 inputs, the demo data and every output under ``work``."""
    return {
        "bundle_root": str(BUNDLE),
        "output_dir": str(work / "eval"),
        "ckpt_dir": str(work / "models"),
        "backbone_weights": "random",
        "network_def#backbone_kwargs": TINY_VIT,
        "spatial_size": [64, 64],
        "num_workers": 0,
        **extra,
    }


def workflow(config_file, workflow_type: str, **override) -> ConfigWorkflow:
    flow = ConfigWorkflow(
        config_file=config_file,
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
    flow.initialize()
    return flow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A bundle trained for 2 epochs on the demo data with a tiny random backbone; returns its work folder."""
    work = tmp_path_factory.mktemp("bundle")
    flow = workflow(TRAIN, "train", **tiny_overrides(work, **{"train#trainer#max_epochs": 2}))
    assert flow.check_properties() == []
    flow.run()
    flow.finalize()
    return work
