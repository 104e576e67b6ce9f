"""DICOM test helpers: the fixture files, a tiny segmenter from the bundle, and dciodvfy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_VIT

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
TINY_OVERRIDES = {"network_def#backbone_kwargs": TINY_VIT, "spatial_size": [64, 64]}


@pytest.fixture(scope="session")
def dicom_dir(fixtures_dir: Path) -> Path:
    folder = fixtures_dir / "dicom"
    if not folder.is_dir():
        pytest.fail(f"{folder} is missing from the shared fixtures")
    return folder


@pytest.fixture(scope="session")
def decoder_checkpoint(tmp_path_factory) -> Path:
    """A fresh tiny SegDINO's decoder state (no training: the tests check plumbing and alignment, not accuracy)."""
    import torch

    from segdino_monai.networks import SegDINO

    torch.manual_seed(0)
    return SegDINO(backbone_kwargs=TINY_VIT).save_decoder(tmp_path_factory.mktemp("ckpt") / "model.pt")


@pytest.fixture(scope="session")
def segmenter_factory(decoder_checkpoint):
    from segdino_monai.services.dicom_batch import DicomSegmenter

    cache = {}

    def make(modality: str):
        if modality not in cache:
            cache[modality] = DicomSegmenter(
                str(BUNDLE), "random", decoder_checkpoint, modality, overrides=TINY_OVERRIDES
            )
        return cache[modality]

    return make


def _program(name: str, package: str, without: str) -> str:
    """A Debian program's path; the test skips where it is absent unless SEGDINO_REQUIRE_FIXTURES=1 (CI installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but {name} (Debian package {package}) is not installed")
    pytest.skip(f"{name} not installed (apt-get install {package}): {without}")


@pytest.fixture(scope="session")
def dciodvfy() -> str:
    """The dicom3tools validator."""
    return _program("dciodvfy", "dicom3tools", "SEG validation not run")


@pytest.fixture(scope="session")
def orthanc_binary() -> str:
    """Debian's Orthanc PACS server."""
    return _program("Orthanc", "orthanc", "the DICOM node is not tested against a PACS")
