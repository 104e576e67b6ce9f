"""Model-zoo style helpers: the bundle's configs run through ConfigWorkflow with tiny overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def bundle_run_command(work: Path, *args: str, config_file: str = TRAIN, run_id: str = "training") -> list[str]:
    """``python -m monai.bundle run <run_id>`` as a user types it, with the tiny overrides of :func:`tiny_overrides`."""
    overrides = tiny_overrides(work)
    options = [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    return [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", config_file, *options, *args]


def command_env() -> dict[str, str]:
    """The environment for commands run by tests: this checkout first on PYTHONPATH."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(BUNDLE.parent), os.environ.get("PYTHONPATH", "")])}


def run_command(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command with this checkout first on PYTHONPATH; stdout and stderr are captured as text."""
    return subprocess.run(command, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_datalist(tmp_path_factory) -> Path:
    """A 6-image 64x64 demo dataset (4 training, 1 validation, 1 test images): its datalist JSON."""
    from segdino_monai.data.demo import make_demo_dataset

    return Path(make_demo_dataset(tmp_path_factory.mktemp("tiny"), "endoscopy", num_images=6, size=(64, 64), seed=0))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A bundle trained for 2 epochs on the demo data with a tiny random backbone; returns its work folder."""
    work = tmp_path_factory.mktemp("bundle")
    flow = workflow(TRAIN, "train", **tiny_overrides(work, **{"train#trainer#max_epochs": 2}))
    assert flow.check_properties() == []
    flow.run()
    flow.finalize()
    return work
