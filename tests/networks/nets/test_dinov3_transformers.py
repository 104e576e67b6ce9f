"""Hugging Face transformers DINOv3 weights (DINOv3ViTModel snapshots) give transformers' own features."""

from __future__ import annotations

import ast
import json
import logging
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from segdino_monai.cli import main
from segdino_monai.networks import DINOV3_ARCHS, DINOv3Backbone
from segdino_monai.networks.weights.transformers_layout import model_config, transformers_to_timm
from segdino_monai.utils.errors import InputError
from tests.networks.dinov3_transformers_files import (
    SIZES,
    hf_config,
    hf_features,
    hf_model,
    relative_errors,
    require_transformers,
)

X = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))  # not square: catches a swapped RoPE axis
DEPTH = 4  # the real ViT-S/16 width, heads, registers and RoPE, with 4 of its 12 blocks


@pytest.fixture(scope="module")
def transformers():
    return require_transformers()


def assert_same_features(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    assert len(ours) == DEPTH
    assert max(relative_errors(ours, reference)) < 1e-5


@pytest.fixture(scope="module")
def vits16(transformers, tmp_path_factory) -> tuple[Path, list[torch.Tensor]]:
    """A ViT-S/16-shaped snapshot folder written by save_pretrained, and transformers' features of it."""
    model = hf_model(transformers, "vits16", DEPTH)
    folder = tmp_path_factory.mktemp("hf") / "dinov3-vits16"
    model.save_pretrained(folder)
    return folder, hf_features(model, X)


@pytest.mark.parametrize("arch", ["vits16", "vits16plus"])
def test_snapshot_folder_gives_transformers_features(transformers, tmp_path, arch):
    model = hf_model(transformers, arch, DEPTH)
    model.save_pretrained(tmp_path / "snapshot")
    assert sorted(p.name for p in (tmp_path / "snapshot").iterdir()) == ["config.json", "model.safetensors"]
    backbone = DINOv3Backbone(arch, weights=tmp_path / "snapshot", depth=DEPTH)
    assert backbone.taps == (0, 1, 2, 3)
    assert_same_features(backbone(X), hf_features(model, X))


def test_safetensors_file_alone_and_module_key_names(vits16, tmp_path, caplog):
    folder, reference = vits16
    alone = tmp_path / "dinov3.safetensors"
    shutil.copy(folder / "model.safetensors", alone)
    with caplog.at_level(logging.INFO):
        assert_same_features(DINOv3Backbone("vits16", weights=alone, depth=DEPTH)(X), reference)
    assert "no config.json" in caplog.text
    # transformers v5 names the blocks model.layer.N in its modules (files keep layer.N): both load.
    state = {
        k.replace("layer.", "model.layer.", 1) if k.startswith("layer.") else k: v for k, v in load_file(alone).items()
    }
    save_file(state, str(tmp_path / "v5.safetensors"))
    assert_same_features(DINOv3Backbone("vits16", weights=tmp_path / "v5.safetensors", depth=DEPTH)(X), reference)


@pytest.mark.parametrize("arch", sorted(SIZES))
def test_every_supported_size_maps_key_for_key(transformers, arch):
    with torch.device("meta"):  # shapes only: no memory, no time
        hf = transformers.DINOv3ViTModel(hf_config(transformers, arch))
        ours = timm.create_model(f"{DINOV3_ARCHS[arch]}_qkvb", num_classes=0)
    mapped, expected = transformers_to_timm(hf.state_dict()), ours.state_dict()
    assert sorted(mapped) == sorted(expected)
    assert all(mapped[k].shape == expected[k].shape for k in expected)
    config = hf.config.to_dict()
    assert {k: config[k] for k in model_config(ours)} == model_config(ours)


def edited_copy(folder: Path, tmp_path: Path, **changes) -> Path:
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **changes}))
    return copy


def test_config_of_another_size_names_both_sizes(vits16, tmp_path, caplog):
    folder, _ = vits16
    vitb16 = edited_copy(folder, tmp_path, hidden_size=768, num_attention_heads=12, intermediate_size=3072)
    with pytest.raises(
        InputError, match=r"describes DINOv3 vitb16 \(hidden_size 768.*backbone is vits16 \(hidden_size 384"
    ):
        DINOv3Backbone("vits16", weights=vitb16, depth=DEPTH)
    # The real file through the command: a 4-block ViT-S is neither vitb16 nor a 12-block vits16.
    assert main(["check-weights", str(folder), "--backbone", "vitb16"]) == 2
    assert (
        "describes DINOv3 vits16 (hidden_size 384" in caplog.text
        and "backbone is vitb16 (hidden_size 768" in caplog.text
    )
    assert "--backbone vits16" in caplog.text and "num_hidden_layers 4" in caplog.text


def test_config_with_another_rope_base_or_model_is_refused(vits16, tmp_path):
    folder, _ = vits16
    with pytest.raises(InputError, match="rope_theta 10000"):
        DINOv3Backbone("vits16", weights=edited_copy(folder, tmp_path, rope_theta=10000.0), depth=DEPTH)
    shutil.rmtree(tmp_path / "edited")
    with pytest.raises(InputError, match="'dinov3_convnext' config, not a DINOv3 ViT"):
        DINOv3Backbone("vits16", weights=edited_copy(folder, tmp_path, model_type="dinov3_convnext"), depth=DEPTH)


def test_missing_extra_and_unrepresentable_keys_are_named(vits16, tmp_path):
    folder, _ = vits16
    state = load_file(folder / "model.safetensors")

    def load(changed: dict[str, torch.Tensor]) -> None:
        save_file(changed, str(tmp_path / "model.safetensors"))
        DINOv3Backbone("vits16", weights=tmp_path / "model.safetensors", depth=DEPTH)

    with pytest.raises(InputError, match=r"missing keys \['layer\.1\.mlp\.up_proj\.weight'\]"):
        load({k: v for k, v in state.items() if k != "layer.1.mlp.up_proj.weight"})
    with pytest.raises(InputError, match=r"lacks \['layer\.2\.attention\.k_proj\.weight'\]"):
        load({k: v for k, v in state.items() if k != "layer.2.attention.k_proj.weight"})
    with pytest.raises(InputError, match=r"do not map to DINOv3 in timm: \['layer\.0\.attention\.extra\.weight'\]"):
        load({**state, "layer.0.attention.extra.weight": torch.ones(3)})
    with pytest.raises(InputError, match=r"layer\.3\.attention\.k_proj\.bias is not zero"):
        load({**state, "layer.3.attention.k_proj.bias": torch.full((384,), 0.1)})
    load({**state, "layer.3.attention.k_proj.bias": torch.zeros(384)})  # key_bias: true with a zero bias is exact
    load({**state, "rope_embeddings.inv_freq": torch.ones(16)})  # a saved RoPE buffer is ignored, as by transformers


def test_bundle_resolver_and_check_weights_accept_a_full_size_snapshot(transformers, tmp_path, caplog, monkeypatch):
    from segdino_monai.networks.weights.resolve import resolve_backbone_weights

    monkeypatch.setenv("SEGDINO_CACHE_DIR", str(tmp_path / "cache"))  # check-weights caches the file's SHA-256

    full = tmp_path / "dinov3-vits16-pretrain-lvd1689m"
    hf_model(transformers, "vits16", 12).save_pretrained(full)
    assert resolve_backbone_weights(str(full)) == str(full)
    with caplog.at_level(logging.INFO):
        assert main(["check-weights", str(full), "--backbone", "vits16"]) == 0
    assert "loads into vit_small_patch16_dinov3_qkvb: 21596160 parameters" in caplog.text
    assert "model.safetensors SHA-256 " in caplog.text and "no hash in its name" in caplog.text


def test_the_package_never_imports_transformers():
    """transformers is a test dependency only (extra dev): loading its files must not need it."""
    package = Path(__file__).resolve().parents[3] / "segdino_monai"
    importers, files = [], sorted(package.rglob("*.py"))
    assert package / "networks" / "weights" / "transformers_layout.py" in files
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(n.split(".")[0] == "transformers" for n in names):
                importers.append(path.name)
    assert importers == []
