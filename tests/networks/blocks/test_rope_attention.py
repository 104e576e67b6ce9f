from __future__ import annotations

import pytest
import timm
import torch
from timm.layers.pos_embed_sincos import apply_rot_embed_cat
from timm.models.eva import EvaAttention

from segdino_monai.networks.blocks import rope_attention
from segdino_monai.networks.blocks.rope_attention import RopeAttention, _rope, use_rope_attention
from segdino_monai.networks.nets.dinov3_backbone import DINOv3Backbone
from tests.conftest import TINY_VIT


def _timm_and_ours() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    timm_model = timm.create_model("vit_small_patch16_dinov3_qkvb", num_classes=0, **TINY_VIT).eval()
    ours = DINOv3Backbone("vits16", **TINY_VIT).model
    ours.load_state_dict(timm_model.state_dict())
    return timm_model, ours


def _maps(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return model.forward_intermediates(x, indices=[1, 3], norm=True, intermediates_only=True)


def test_the_backbone_runs_rope_attention_with_timm_parameters():
    timm_model, ours = _timm_and_ours()
    attentions = [m for m in ours.modules() if isinstance(m, EvaAttention)]
    assert len(attentions) == TINY_VIT["depth"] and all(type(m) is RopeAttention for m in attentions)
    assert list(ours.state_dict()) == list(timm_model.state_dict())  # nothing added or renamed
    assert use_rope_attention(ours) == 0  # already converted: nothing to do


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (3, 3, 48, 80)])
def test_rope_attention_gives_timm_features(shape, monkeypatch):
    """Same maps as timm's own attention, to float rounding (the products and sums are rounded in the same order)."""
    timm_model, ours = _timm_and_ours()
    x = torch.rand(*shape)
    calls = []
    monkeypatch.setattr(rope_attention, "_rope", lambda *args, **kw: calls.append(1) or _rope(*args, **kw))
    with torch.no_grad():
        for expected, got in zip(_maps(timm_model, x), _maps(ours, x), strict=True):
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert len(calls) == 2 * TINY_VIT["depth"]  # q and k of every block took the fast path


def test_training_and_other_dtypes_run_timm_forward_bit_for_bit():
    timm_model, ours = _timm_and_ours()
    x = torch.rand(2, 3, 32, 32)
    timm_model.train()
    ours.train()
    for expected, got in zip(_maps(timm_model, x), _maps(ours, x), strict=True):
        assert torch.equal(got, expected)
    timm_model.eval().to(torch.bfloat16)
    ours.eval().to(torch.bfloat16)  # RoPE embedding (from float32 periods) then differs in dtype from the tokens
    timm_model.rope.periods = ours.rope.periods = timm_model.rope.periods.float()
    with torch.no_grad():
        for expected, got in zip(_maps(timm_model, x.bfloat16()), _maps(ours, x.bfloat16()), strict=True):
            assert torch.equal(got, expected)


def test_rope_rotates_the_patch_tokens_as_timm_and_leaves_the_prefix_tokens():
    torch.manual_seed(1)
    qkv = torch.randn(2, 7 + 5, 3, 4, 16).permute(2, 0, 3, 1, 4)  # strided, as the fused qkv output
    q = qkv[0]
    emb = torch.randn(7, 32)
    expected = torch.cat([q[:, :, :5], apply_rot_embed_cat(q[:, :, 5:], emb, half=True)], dim=2)
    got = _rope(q, *emb.chunk(2, -1), prefix=5)
    assert got.is_contiguous() and torch.equal(got[:, :, :5], q[:, :, :5])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.equal(got[:, :, 5:], q[:, :, 5:])
