"""Hugging Face ``transformers`` DINOv3 weights (``DINOv3ViTModel``) mapped exactly onto timm's DINOv3 ViT.

Many users get DINOv3 from the Hugging Face hub (``facebook/dinov3-vits16-pretrain-lvd1689m``): a snapshot folder with
``config.json`` and ``model.safetensors``. Neither timm's converter nor the SegDINO reference code reads that layout,
and ``transformers`` itself is not needed to: this module renames the keys (fusing q/k/v into timm's ``qkv``), the
way :mod:`~segdino_monai.networks.weights.checkpoint_layouts` does for Meta's files, and checks ``config.json`` against
the timm model so that a file of another size, RoPE base or activation fails with the difference named instead of
loading into features that are silently wrong. Key names and model details follow ``transformers``'
``models/dinov3_vit/modeling_dinov3_vit.py`` (v4.56 to v5): the RoPE (``rope_theta``; its periods are computed, not
stored), LayerScale (``layer_scale{1,2}.lambda1``), register tokens (``embeddings.register_tokens``), and the blocks
as ``layer.N`` in files (``model.layer.N`` in v5's modules).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segdino_monai.utils.errors import InputError

__all__ = [
    "CONFIG_FILE",
    "SIZES",
    "WEIGHTS_FILE",
    "check_config",
    "is_transformers_state",
    "model_config",
    "read_config",
    "transformers_name",
    "transformers_to_timm",
]

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_MODEL_TYPE = "dinov3_vit"

#: The DINOv3 ViT sizes the package supports, by (hidden_size, use_gated_mlp) of their ``config.json``.
SIZES: dict[tuple[int, bool], str] = {
    (384, False): "vits16",
    (384, True): "vits16plus",
    (768, False): "vitb16",
    (1024, False): "vitl16",
    (1280, True): "vith16plus",
}

# (transformers' name, timm's name); <i> is a block index, <n> 1 or 2, <p> weight or bias. up_proj is the first
# linear of the plain MLP (timm's fc1) or the "up" half of the gated one (timm's SwiGLU fc1_x, beside fc1_g).
_NAMES = (
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.register_tokens", "reg_token"),
    ("embeddings.patch_embeddings.<p>", "patch_embed.proj.<p>"),
    ("norm.<p>", "norm.<p>"),
    ("layer.<i>.norm<n>.<p>", "blocks.<i>.norm<n>.<p>"),
    ("layer.<i>.layer_scale<n>.lambda1", "blocks.<i>.gamma_<n>"),
    ("layer.<i>.attention.q_proj.bias", "blocks.<i>.attn.q_bias"),
    ("layer.<i>.attention.v_proj.bias", "blocks.<i>.attn.v_bias"),
    ("layer.<i>.attention.o_proj.<p>", "blocks.<i>.attn.proj.<p>"),
    ("layer.<i>.mlp.gate_proj.<p>", "blocks.<i>.mlp.fc1_g.<p>"),
    ("layer.<i>.mlp.up_proj.<p>", "blocks.<i>.mlp.fc1_x.<p>"),
    ("layer.<i>.mlp.up_proj.<p>", "blocks.<i>.mlp.fc1.<p>"),
    ("layer.<i>.mlp.down_proj.<p>", "blocks.<i>.mlp.fc2.<p>"),
    ("layer.<i>.attention.{q,k,v}_proj.weight", "blocks.<i>.attn.qkv.weight"),
)
_GROUPS = {"<i>": r"(?P<i>\d+)", "<n>": r"(?P<n>[12])", "<p>": r"(?P<p>weight|bias)"}
_QKV = re.compile(r"^layer\.(\d+)\.attention\.([qkv])_proj\.weight$")
_K_BIAS = re.compile(r"^layer\.(\d+)\.attention\.k_proj\.bias$")
# The mask token is used in pretraining only (masked image modelling): no place in a frozen feature extractor. The RoPE
# frequencies are a non-persistent buffer that transformers does not save; where a file has them they are ignored: the
# RoPE follows config.json's rope_theta, which check_config compares with the model's.
_NOT_LOADED = ("embeddings.mask_token", "rope_embeddings.inv_freq")


def _pattern(template: str) -> re.Pattern[str]:
    text = re.escape(template)
    for name, group in _GROUPS.items():
        text = text.replace(re.escape(name), group)
    return re.compile(f"^{text}$")


def _fill(template: str, match: re.Match[str]) -> str:
    for name, value in match.groupdict().items():
        template = template.replace(f"<{name}>", value)
    return template


# By use_gated_mlp: the renames of a plain MLP's keys (no fc1_x) and of a gated one's (no fc1).
_FORWARD = {
    gated: [
        (_pattern(hf), timm) for hf, timm in _NAMES if "{" not in hf and (".fc1." if gated else ".fc1_x.") not in timm
    ]
    for gated in (False, True)
}
_BACKWARD = [(_pattern(timm), hf) for hf, timm in _NAMES]


def is_transformers_state(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state dict has ``transformers``' DINOv3 ViT keys."""
    return "embeddings.cls_token" in state or any(re.match(r"^(model\.)?layer\.\d+\.attention\.", k) for k in state)


def transformers_name(timm_key: str) -> str:
    """The ``transformers`` name of a timm DINOv3 key, for messages (the timm key itself when it has none)."""
    for pattern, template in _BACKWARD:
        if match := pattern.match(timm_key):
            return _fill(template, match)
    return timm_key


def transformers_to_timm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map ``transformers``' DINOv3 ViT keys to timm's, exactly.

    q, k and v projections are fused into timm's ``qkv``; timm keeps q and v biases and a fixed zero k bias, so a k
    bias (``key_bias: true``) must be zero, else it cannot be represented and is an error.

    Args:
        state: the state dict of a ``DINOv3ViTModel`` (``layer.N`` or v5's ``model.layer.N`` block names).

    Returns:
        The state dict in timm's layout.

    Raises:
        ValueError: naming the keys that do not map, a q/k/v weight that is missing, or a non-zero k bias.
    """
    state = {re.sub(r"^model\.layer\.", "layer.", k): v for k, v in state.items()}
    gated = any(".mlp.gate_proj." in k for k in state)
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    unmapped = []
    for key, value in state.items():
        if key in _NOT_LOADED:
            continue
        if match := _QKV.match(key):
            qkv.setdefault(match[1], {})[match[2]] = value
            continue
        if _K_BIAS.match(key):
            if value.abs().max() > 0:
                raise ValueError(
                    f"{key} is not zero: DINOv3 in timm has no key bias, so this checkpoint cannot be loaded exactly."
                )
            continue
        for pattern, template in _FORWARD[gated]:
            if match := pattern.match(key):
                out[_fill(template, match)] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} key(s) of the transformers checkpoint do not map to DINOv3 in timm: {unmapped[:8]}"
        )
    for block, parts in sorted(qkv.items(), key=lambda item: int(item[0])):
        missing = [f"layer.{block}.attention.{p}_proj.weight" for p in "qkv" if p not in parts]
        if missing:
            raise ValueError(f"The transformers checkpoint lacks {missing}.")
        out[f"blocks.{block}.attn.qkv.weight"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def read_config(weights: str | Path) -> tuple[dict[str, Any] | None, Path]:
    """The ``config.json`` of a snapshot folder, or the one beside its ``model.safetensors`` file.

    Args:
        weights: the snapshot folder or a weights file in it.

    Returns:
        The config (``None`` when there is none) and the path it was looked for at.

    Raises:
        InputError: naming the file, when it is not JSON or is not a DINOv3 ViT config.
    """
    weights = Path(weights)
    path = (weights if weights.is_dir() else weights.parent) / CONFIG_FILE
    if not path.is_file():
        return None, path
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{path} cannot be read as JSON ({err}); it should be the snapshot's config.json.") from err
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != _MODEL_TYPE:
        raise InputError(
            f"{path} is a {model_type!r} config, not a DINOv3 ViT ({_MODEL_TYPE!r}): pass the snapshot of a DINOv3 "
            f"ViT ({', '.join(sorted(SIZES.values()))}; the ConvNeXt models are not supported)."
        )
    return config, path


def model_config(model: nn.Module) -> dict[str, Any]:
    """The ``config.json`` values that describe a timm DINOv3 ViT (those a weights file must agree with)."""
    block = model.blocks[0]
    gated = hasattr(block.mlp, "fc1_g")
    return {
        "hidden_size": int(model.embed_dim),
        "num_hidden_layers": len(model.blocks),
        "num_attention_heads": int(block.attn.num_heads),
        "intermediate_size": int((block.mlp.fc1_g if gated else block.mlp.fc1).out_features),
        "use_gated_mlp": gated,
        "hidden_act": "silu" if gated else "gelu",
        "num_register_tokens": 0 if model.reg_token is None else int(model.reg_token.shape[1]),
        "patch_size": int(model.patch_embed.patch_size[0]),
        "layer_norm_eps": float(model.norm.eps),
    }


def check_config(config: Mapping[str, Any], model: nn.Module, source: Path, backbone: str) -> None:
    """Check a ``config.json`` against the timm model its weights are loaded into.

    Args:
        config: the ``DINOv3ViTModel`` config.
        model: the timm DINOv3 ViT.
        source: the config file, for messages.
        backbone: the backbone's name as the user gave it (``vits16``), for messages.

    Raises:
        InputError: naming both sizes and every value that differs, or a RoPE of another base.
    """
    expected = model_config(model)
    differ = [k for k, v in expected.items() if k in config and _differs(config[k], v)]
    if differ:
        size = SIZES.get((config.get("hidden_size"), bool(config.get("use_gated_mlp"))), "an unsupported size")
        found = ", ".join(f"{k} {config[k]}" for k in differ)
        wanted = ", ".join(f"{k} {expected[k]}" for k in differ)
        hint = f" (--backbone {size})" if size in SIZES.values() else ""
        raise InputError(
            f"{source} describes DINOv3 {size} ({found}), but the backbone is {backbone} ({wanted}). Choose the "
            f"backbone that matches the weights{hint}."
        )
    periods = getattr(getattr(model, "rope", None), "periods", None)
    head_dim = expected["hidden_size"] // expected["num_attention_heads"]
    theta = float(config.get("rope_theta", 100.0))
    # transformers' RoPE: inv_freq = 1 / rope_theta ** arange(0, 1, 4 / head_dim); timm keeps periods = 1 / inv_freq.
    ours = theta ** torch.arange(0, 1, 4 / head_dim, dtype=torch.float32)
    if periods is not None and (periods.shape != ours.shape or not torch.allclose(periods.float(), ours, rtol=1e-4)):
        raise InputError(
            f"{source}: rope_theta {theta:g} gives other RoPE periods than the backbone {backbone}'s (DINOv3 uses "
            "100): the features would all change, so these weights cannot be loaded into it."
        )


def _differs(found: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return not isinstance(found, (int, float)) or abs(float(found) - expected) > 1e-12
    if isinstance(expected, bool):
        return bool(found) != expected
    if isinstance(found, (list, tuple)):  # patch_size may be written as [16, 16]
        return any(f != expected for f in found)
    return found != expected
