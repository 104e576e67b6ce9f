"""Shared test helpers: a tiny DINOv3 of the real architecture, the shared fixture folder, the DICOM fixture files, a
tiny segmenter from the bundle, and the Debian programs some tests need (dciodvfy, Orthanc)."""

from __future__ import annotations

import importlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

# A DINOv3 ViT with the real code path (RoPE, 4 registers, LayerScale, q/v biases) but small width and depth.
TINY_VIT = {"embed_dim": 48, "depth": 4, "num_heads": 2}

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _own_cache_dir(tmp_path_factory):
    """The package's caches (weights hashes) go to a test folder, never the user's ~/.cache (commands inherit it)."""
    previous = os.environ.get("SEGDINO_CACHE_DIR")
    os.environ["SEGDINO_CACHE_DIR"] = str(tmp_path_factory.mktemp("segdino-cache"))
    yield
    if previous is None:
        os.environ.pop("SEGDINO_CACHE_DIR", None)
    else:
        os.environ["SEGDINO_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def _cpu_threads():
    torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Bundle workflows install logging.conf's handlers on the root logger; keep them from leaking across tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared real-data fixtures; skipped where absent unless SEGDINO_REQUIRE_FIXTURES=1 (CI)."""
    if FIXTURES.is_dir():
        return FIXTURES
    if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but the fixture folder {FIXTURES} does not exist")
    pytest.skip(f"shared fixtures not found at {FIXTURES} (they sit beside the checkout in CI)")


class _Errors(logging.Handler):
    """The error lines the command logs; on its own logger, since the bundle's logging.conf resets the root's."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def errors():
    handler = _Errors()
    logger = logging.getLogger("segdino_monai")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def import_or_skip(name: str, install: str, untested: str) -> Any:
    """Import an optional package; skip the calling test module without it, unless SEGDINO_REQUIRE_FIXTURES=1 (CI
    installs every extra: then the ImportError stands)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            raise
        pytest.skip(f"{name} is not installed ({install}): {untested}", allow_module_level=True)


# the DICOM and services tests' fixtures
BUNDLE = Path(__file__).resolve().parents[1] / "bundle"
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
    from segdino_monai.services.predictor import BundlePredictor

    cache = {}

    def make(modality: str):
        if modality not in cache:
            cache[modality] = BundlePredictor(
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
