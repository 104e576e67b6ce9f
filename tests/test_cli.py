from __future__ import annotations

import logging

import pytest
import timm
import torch

from segdino_monai.cli import main
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import meta_state_dict, tiny_timm_model, write_meta_file


def test_check_weights_names_both_sizes_for_a_wrong_size_file(tmp_path, caplog):
    full_size = tiny_timm_model(**{k: v for k, v in TINY_VIT.items() if k != "depth"}, depth=12)
    path = write_meta_file(full_size, tmp_path / "dinov3_tiny.pth")
    with pytest.raises(SystemExit):
        main(["check-weights", "--help"])
    with caplog.at_level(logging.INFO):
        # A tiny file is not ViT-S: the command must say so and fail with status 2.
        assert main(["check-weights", str(path), "--backbone", "vits16"]) == 2
    assert "embed_dim 48, 12 blocks" in caplog.text and "embed_dim 384" in caplog.text


def test_check_weights_missing_file(tmp_path, caplog):
    assert main(["check-weights", str(tmp_path / "none.pth")]) == 2
    assert "not found" in caplog.text


def test_check_weights_accepts_a_full_size_meta_file(tmp_path, caplog):
    vits16 = timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, num_classes=0)
    torch.save(meta_state_dict(vits16), tmp_path / "dinov3_vits16_pretrain.pth")
    with caplog.at_level(logging.INFO):
        assert main(["check-weights", str(tmp_path / "dinov3_vits16_pretrain.pth")]) == 0
    assert "21596160 parameters, embed_dim 384, taps [2, 5, 8, 11]" in caplog.text
