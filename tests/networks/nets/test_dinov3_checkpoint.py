"""Loading DINOv3 weight files: Meta's layout, timm's (.pth and .safetensors), and the errors for wrong files."""

from __future__ import annotations

import pytest
import timm
import torch

from segdino_monai.networks import DINOv3Backbone
from segdino_monai.utils.errors import InputError
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import meta_state_dict, tiny_timm_model, write_meta_file, write_timm_file

X = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))


def features(backbone: DINOv3Backbone) -> list[torch.Tensor]:
    return backbone(X)


def reference_features(model: torch.nn.Module, taps=(0, 1, 2, 3)) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.forward_intermediates(X, indices=list(taps), norm=True, intermediates_only=True)


@pytest.mark.parametrize(
    ("arch", "timm_name"),
    [("vits16", "vit_small_patch16_dinov3_qkvb"), ("vits16plus", "vit_small_plus_patch16_dinov3_qkvb")],
)
def test_meta_file_with_masked_key_bias_matches_timm_file(tmp_path, arch, timm_name):
    model = tiny_timm_model(timm_name)
    meta = write_meta_file(model, tmp_path / "dinov3_meta.pth")
    assert torch.load(meta, weights_only=True)["blocks.0.attn.qkv.bias"].abs()[48:96].min() > 0  # a real k bias
    from_meta = features(DINOv3Backbone(arch, weights=meta, **TINY_VIT))
    from_timm = features(DINOv3Backbone(arch, weights=write_timm_file(model, tmp_path / "w.safetensors"), **TINY_VIT))
    for a, b, ref in zip(from_meta, from_timm, reference_features(model), strict=True):
        assert torch.equal(a, b)
        torch.testing.assert_close(a, ref)


def test_q_and_v_biases_are_loaded_not_dropped(tmp_path):
    model = tiny_timm_model()
    backbone = DINOv3Backbone("vits16", weights=write_meta_file(model, tmp_path / "m.pth"), **TINY_VIT)
    torch.testing.assert_close(backbone.model.blocks[2].attn.q_bias, model.blocks[2].attn.q_bias)
    torch.testing.assert_close(backbone.model.blocks[2].attn.v_bias, model.blocks[2].attn.v_bias)
    random = DINOv3Backbone("vits16", **TINY_VIT)
    assert not torch.allclose(features(random)[-1], features(backbone)[-1])


def test_unmasked_key_bias_is_an_error(tmp_path):
    state = meta_state_dict(tiny_timm_model())
    state["blocks.1.attn.qkv.bias_mask"].fill_(1.0)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.qkv\.bias: the key part"):
        DINOv3Backbone("vits16", weights=tmp_path / "m.pth", **TINY_VIT)


def test_timm_file_of_plain_variant_and_wrapped_pth(tmp_path):
    model = tiny_timm_model("vit_small_patch16_dinov3")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "plain.pth")
    backbone = DINOv3Backbone("vits16", weights=tmp_path / "plain.pth", **TINY_VIT)
    assert backbone.arch == "vit_small_patch16_dinov3"
    for a, ref in zip(features(backbone), reference_features(model), strict=True):
        torch.testing.assert_close(a, ref)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = tiny_timm_model().state_dict()
    del state["blocks.1.norm1.weight"]
    state["blocks.0.attn.extra_scale"] = torch.ones(1)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(ValueError, match="does not fit") as err:
        DINOv3Backbone("vits16", weights=tmp_path / "w.pth", **TINY_VIT)
    assert "blocks.1.norm1.weight" in str(err.value) and "blocks.0.attn.extra_scale" in str(err.value)


def test_meta_key_that_does_not_map_is_named(tmp_path):
    state = meta_state_dict(tiny_timm_model())
    state["blocks.0.attn.mystery.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "m.pth")
    with pytest.raises(ValueError, match=r"do not map.*blocks\.0\.attn\.mystery\.weight"):
        DINOv3Backbone("vits16", weights=tmp_path / "m.pth", **TINY_VIT)


def test_wrong_size_names_both_sizes(tmp_path):
    path = write_meta_file(tiny_timm_model(embed_dim=64, num_heads=2), tmp_path / "m.pth")
    with pytest.raises(ValueError, match="embed_dim 64.*embed_dim 48"):
        DINOv3Backbone("vits16", weights=path, **TINY_VIT)


def test_full_size_small_file_into_base_is_an_error(tmp_path):
    small = timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, num_classes=0)
    path = write_timm_file(small, tmp_path / "vits16.safetensors")
    with pytest.raises(ValueError, match=r"embed_dim 384, 12 blocks.*vit_base_patch16_dinov3_qkvb \(embed_dim 768"):
        DINOv3Backbone("vitb16", weights=path)


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"DINOv3 weights file .*junk.pth cannot be read as tensors"):
        DINOv3Backbone("vits16", weights=tmp_path / "junk.pth", **TINY_VIT)
    with pytest.raises(InputError, match="DINOv3 weights file not found: .*nowhere.pth"):
        DINOv3Backbone("vits16", weights=tmp_path / "nowhere.pth", **TINY_VIT)
    torch.save({"a": torch.ones(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="Unrecognised checkpoint layout"):
        DINOv3Backbone("vits16", weights=tmp_path / "other.pth", **TINY_VIT)


class _Payload:
    """Pickles as a call that creates a marker file: it must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "payload_ran"
    torch.save({"model": {"cls_token": torch.ones(1)}, "args": _Payload(marker)}, tmp_path / "pickled.pth")
    with pytest.raises(InputError, match=r"pickled.pth holds pickled Python objects \(io.open\)") as err:
        DINOv3Backbone("vits16", weights=tmp_path / "pickled.pth", **TINY_VIT)
    assert "weights_only" not in str(err.value)
    assert not marker.exists()
