"""A tiny SegDINO exported once per test session by ``segdino export``, shared by the ONNX tests."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from segdino_monai.cli import main
from segdino_monai.networks import SegDINO
from tests.conftest import TINY_VIT

#: The ``--set`` that makes the bundle's network the tiny DINOv3 of the tests.
TINY_SET = f"network_def#backbone_kwargs={TINY_VIT}"
#: The export's example size (not square, so that a swap of height and width would show).
EXPORT_SIZE = (32, 48)

_EXPORTS: dict[str, TinyExport] = {}


@dataclass
class TinyExport:
    """The exported file, the decoder checkpoint it was made from, and the same network in PyTorch."""

    onnx: Path
    checkpoint: Path
    network: SegDINO


def random_decoder(path: Path, seed: int) -> SegDINO:
    """A tiny SegDINO (the bundle's random backbone) with a random decoder whose logits spread around 0, saved."""
    torch.manual_seed(seed)
    net = SegDINO(backbone_kwargs=TINY_VIT)
    with torch.no_grad():
        for param in net.parameters():
            if param.requires_grad:
                param.normal_(0.0, 0.05)
    net.save_decoder(path)
    return net.eval()


def require_onnx_extra() -> None:
    """Skip where the onnx extra is missing, unless SEGDINO_REQUIRE_FIXTURES=1 (CI installs it: then fail)."""
    missing = [name for name in ("onnx", "onnxruntime", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing and os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
        pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but {missing} (the onnx extra) is not installed")
    if missing:
        pytest.skip(f"{missing} not installed: pip install 'segdino-monai[onnx]'")


def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    """Export the tiny network to ONNX with the command, once per session."""
    require_onnx_extra()
    if "onnx" not in _EXPORTS:
        folder = tmp_path_factory.mktemp("onnx-export")
        net = random_decoder(folder / "model.pt", seed=3)
        argv = ["export", "-o", str(folder / "model.onnx"), "--backbone-weights", "random"]
        argv += ["--checkpoint", str(folder / "model.pt"), "--set", TINY_SET, "--image-size", *map(str, EXPORT_SIZE)]
        assert main(argv) == 0
        _EXPORTS["onnx"] = TinyExport(folder / "model.onnx", folder / "model.pt", net)
    return _EXPORTS["onnx"]
