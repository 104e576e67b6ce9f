from __future__ import annotations

import logging

import pytest
import torch

from segdino_monai.networks import DINOv3Backbone, default_taps
from segdino_monai.networks.nets.dinov3_backbone import use_bf16
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import tiny_timm_model, write_timm_file


@pytest.mark.parametrize(
    ("arch", "overrides", "taps", "grid"),
    [
        ("vits16", TINY_VIT, (0, 1, 2, 3), (4, 6)),
        ("vits16plus", TINY_VIT, (0, 1, 2, 3), (4, 6)),
        ("vitb16", {"embed_dim": 64, "num_heads": 4}, (2, 5, 8, 11), (4, 6)),
        ("vitl16", {"embed_dim": 64, "num_heads": 4}, (4, 11, 17, 23), (2, 3)),
        ("vith16plus", {"embed_dim": 64, "num_heads": 4}, (7, 15, 23, 31), (2, 3)),
    ],
)
@pytest.mark.parametrize("batch", [1, 3])
def test_taps_and_shapes(arch, overrides, taps, grid, batch):
    backbone = DINOv3Backbone(arch, **overrides)
    assert backbone.taps == taps
    maps = backbone(torch.rand(batch, 3, grid[0] * 16, grid[1] * 16))
    assert [tuple(m.shape) for m in maps] == [(batch, overrides["embed_dim"], *grid)] * 4
    assert backbone.out_channels == [overrides["embed_dim"]] * 4


@pytest.mark.parametrize(("arch", "width"), [("vits16", 384), ("vitb16", 768)])
def test_full_size_backbones(arch, width):
    backbone = DINOv3Backbone(arch)
    assert (backbone.embed_dim, backbone.patch_size, backbone.taps) == (width, 16, (2, 5, 8, 11))
    maps = backbone(torch.rand(2, 3, 32, 48))
    assert [tuple(m.shape) for m in maps] == [(2, width, 2, 3)] * 4


def test_default_taps_rule():
    assert default_taps(12) == (2, 5, 8, 11)
    assert default_taps(24) == (4, 11, 17, 23)
    assert default_taps(32) == (7, 15, 23, 31)
    assert default_taps(6, num_taps=3) == (1, 3, 5)
    with pytest.raises(ValueError, match="num_taps"):
        default_taps(2, num_taps=3)


def test_taps_are_final_normed_prefix_free_block_outputs(tmp_path):
    """Each map equals block i's tokens, through the final norm, without the 1 cls + 4 register tokens."""
    reference = tiny_timm_model()
    backbone = DINOv3Backbone("vits16", weights=write_timm_file(reference, tmp_path / "w.pth"), taps=(1, 3), **TINY_VIT)
    x = torch.rand(2, 3, 64, 80)
    outputs = {}
    for i in (1, 3):
        reference.blocks[i].register_forward_hook(lambda m, a, out, i=i: outputs.__setitem__(i, out))
    with torch.no_grad():
        reference.forward_features(x)
    maps = backbone(x)
    for i, got in zip((1, 3), maps, strict=True):
        tokens = reference.norm(outputs[i])[:, reference.num_prefix_tokens :]
        expected = tokens.transpose(1, 2).reshape(2, TINY_VIT["embed_dim"], 4, 5)
        torch.testing.assert_close(got, expected)


def test_invalid_taps_and_arch():
    with pytest.raises(ValueError, match="taps must be increasing"):
        DINOv3Backbone("vits16", taps=(1, 4), **TINY_VIT)
    with pytest.raises(ValueError, match="taps must be increasing"):
        DINOv3Backbone("vits16", taps=(2, 1), **TINY_VIT)
    with pytest.raises(ValueError, match="Unknown DINOv3 backbone 'vitz16'"):
        DINOv3Backbone("vitz16")


def test_random_backbone_warns_loudly_and_is_reproducible(caplog):
    torch.manual_seed(123)
    first = DINOv3Backbone("vits16", **TINY_VIT)
    after_build = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(after_build, torch.rand(1))  # building it did not consume the caller's random stream
    torch.manual_seed(456)
    second = DINOv3Backbone("vits16", **TINY_VIT)
    assert "RANDOMLY INITIALISED" in caplog.text
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(first(x)[-1], second(x)[-1])


def test_frozen_no_grad_and_always_eval():
    backbone = DINOv3Backbone("vits16", **TINY_VIT)
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.train()
    assert backbone.training and not any(m.training for m in backbone.model.modules())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    maps = backbone(x)
    assert all(m.grad_fn is None and not m.requires_grad for m in maps)


def test_blocks_after_last_tap_are_pruned():
    backbone = DINOv3Backbone("vits16", taps=(0, 1), **TINY_VIT)
    assert len(backbone.model.blocks) == 2


def test_state_dict_leaves_out_frozen_weights_and_load_keeps_them():
    backbone = DINOv3Backbone("vits16", **TINY_VIT)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    assert backbone.state_dict() == {}
    backbone.load_state_dict({}, strict=True)
    assert all(torch.equal(v, backbone.model.state_dict()[k]) for k, v in before.items())


def test_bf16_autocast_returns_float32_close_to_fp32():
    backbone = DINOv3Backbone("vits16", precision="float32", **TINY_VIT)
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        full = backbone(x)
        backbone.precision = "bfloat16"
        half = backbone(x)
    for a, b in zip(full, half, strict=True):
        assert b.dtype == torch.float32
        assert (a - b).abs().max() < 0.05 * a.abs().max()
        assert not torch.equal(a, b)  # it really ran in bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        DINOv3Backbone("vits16", precision="float8", **TINY_VIT)


@pytest.mark.parametrize(
    "avx512_bf16,amx,expected",
    [(False, False, False), (True, False, True), (False, True, True)],
    ids=["avx2-only", "avx512-bf16", "amx"],
)
def test_auto_precision_is_fp32_on_a_cpu_without_fast_bf16(monkeypatch, avx512_bf16, amx, expected):
    """On an AVX2-only CPU bf16 is ~100x slower than fp32: ``auto`` must stay fp32 there (issue 17, point 5)."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert use_bf16("auto", torch.device("cpu")) is expected
    assert use_bf16("bfloat16", torch.device("cpu")) and not use_bf16("float32", torch.device("cpu"))


@pytest.mark.parametrize("avx512_bf16,precision,warned", [(False, "bfloat16", True), (True, "bfloat16", False),
                                                        (False, "float32", False), (False, "auto", False)])  # fmt: skip
def test_asking_for_bf16_on_a_cpu_without_native_bf16_warns_once(monkeypatch, caplog, avx512_bf16, precision, warned):
    """bfloat16 on an AVX2-only CPU still runs as asked, with one warning that it is ~100x slower than float32."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    backbone = DINOv3Backbone("vits16", precision=precision, **TINY_VIT)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            backbone(torch.rand(1, 3, 32, 32))
    messages = [r.getMessage() for r in caplog.records if "without native bf16" in r.getMessage()]
    assert len(messages) == (1 if warned else 0)
    if warned:
        assert "100x slower" in messages[0] and "'auto' or 'float32'" in messages[0]


def test_inference_mode_only_without_autograd():
    backbone = DINOv3Backbone("vits16", **TINY_VIT)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert backbone(x)[0].is_inference()
    trainable = torch.nn.Conv2d(48, 1, 1)
    maps = backbone(x)  # grad enabled: plain no_grad tensors a trainable head can use
    assert not maps[0].is_inference()
    trainable(maps[0]).sum().backward()
    assert trainable.weight.grad is not None
