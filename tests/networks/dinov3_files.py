"""Synthetic DINOv3 weight files in Meta's and timm's layouts, written from a tiny timm model.

The Meta layout is written here from Meta's published key names (facebookresearch/dinov3 vision_transformer.py),
independently of the package's converter, so that loading it proves the converter right.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from tests.conftest import TINY_VIT


def tiny_timm_model(name: str = "vit_small_patch16_dinov3_qkvb", seed: int = 0, **overrides) -> torch.nn.Module:
    """A tiny timm DINOv3 with every weight random and non-trivial (biases and LayerScale not at their init)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, num_classes=0, **{**TINY_VIT, **overrides}).eval()
    with torch.no_grad():
        for key, param in model.named_parameters():
            if key.endswith(("bias", "gamma_1", "gamma_2", "cls_token", "reg_token")):
                param.copy_(torch.randn_like(param) * 0.5)
    return model


def meta_state_dict(model: torch.nn.Module, k_bias_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Meta's key layout for a timm DINOv3, with a non-zero (masked) key bias."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    head_dim = model.embed_dim // model.blocks[0].attn.num_heads
    out = {
        "cls_token": sd.pop("cls_token"),
        "storage_tokens": sd.pop("reg_token"),
        "mask_token": torch.zeros(1, model.embed_dim),
        "rope_embed.periods": 100.0 ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2)),
    }
    renames = {"gamma_1": "ls1.gamma", "gamma_2": "ls2.gamma", "mlp.fc1_g": "mlp.w1", "mlp.fc1_x": "mlp.w2"}
    swiglu = any(".fc1_g." in k for k in sd)
    for key in list(sd):
        if key not in sd:  # a v_bias already taken with its q_bias
            continue
        if key.endswith("attn.q_bias"):
            block = key.removesuffix(".attn.q_bias")
            q, v = sd.pop(key), sd.pop(f"{block}.attn.v_bias")
            out[f"{block}.attn.qkv.bias"] = torch.cat([q, torch.randn_like(q) * k_bias_scale, v])
            out[f"{block}.attn.qkv.bias_mask"] = torch.cat(
                [torch.ones_like(q), torch.zeros_like(q), torch.ones_like(v)]
            )
            continue
        new = key
        for old, meta in renames.items():
            new = new.replace(old, meta)
        if swiglu:
            new = new.replace("mlp.fc2", "mlp.w3")
        out[new] = sd.pop(key)
    return out


def write_meta_file(model: torch.nn.Module, path: Path) -> Path:
    torch.save(meta_state_dict(model), path)
    return path


def write_timm_file(model: torch.nn.Module, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path
