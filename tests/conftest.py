"""Shared test helpers: a tiny DINOv3 of the real architecture and the shared fixture folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# A DINOv3 ViT with the real code path (RoPE, 4 registers, LayerScale, q/v biases) but small width and depth.
TINY_VIT = {"embed_dim": 48, "depth": 4, "num_heads": 2}

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(autouse=True)
def _cpu_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared real-data fixtures; skipped where absent unless SEGDINO_REQUIRE_FIXTURES=1 (CI)."""
    if FIXTURES.is_dir():
        return FIXTURES
    if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but the fixture folder {FIXTURES} does not exist")
    pytest.skip(f"shared fixtures not found at {FIXTURES} (they sit beside the checkout in CI)")
