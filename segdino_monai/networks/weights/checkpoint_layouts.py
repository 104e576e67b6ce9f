"""Reading DINOv3 weight files (Meta's original layout, timm's, Hugging Face's) into timm's DINOv3 ViT key layout.

timm has its own converter (``timm.models.eva.checkpoint_filter_fn``), but it silently drops keys it does not know,
drops the q/v biases when the target model has none and ignores ``attn.qkv.bias_mask``. We need the opposite: every key
maps or the load fails with its name, and Meta's masked key bias is applied, not assumed. Hence this small converter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from segdino_monai.networks.weights.hashes import check_name_hash
from segdino_monai.networks.weights.safe_load import safe_load
from segdino_monai.networks.weights.transformers_layout import WEIGHTS_FILE, is_transformers_state
from segdino_monai.utils.errors import InputError

__all__ = [
    "CheckpointLayout",
    "describe_checkpoint",
    "detect_layout",
    "load_weights_file",
    "meta_to_timm",
    "weights_file",
]

logger = logging.getLogger(__name__)


class CheckpointLayout:
    """Names of the key layouts a DINOv3 weights file can have."""

    META = "meta"
    TIMM = "timm"
    TRANSFORMERS = "transformers"


# Keys in Meta's files that exist only for pretraining; they have no place in a frozen feature extractor.
_META_PRETRAIN_ONLY = ("mask_token",)
_META_PRETRAIN_ONLY_PREFIXES = ("projectors.", "local_cls_norm.")

_META_RENAMES = (
    (re.compile(r"^storage_tokens$"), "reg_token"),
    (re.compile(r"^(blocks\.\d+)\.ls1\.gamma$"), r"\1.gamma_1"),
    (re.compile(r"^(blocks\.\d+)\.ls2\.gamma$"), r"\1.gamma_2"),
    # DINOv3's SwiGLU FFN (S+ and H+): out = w3(silu(w1 x) * w2 x); timm's SwiGLU: fc2(act(fc1_g x) * fc1_x x).
    (re.compile(r"^(blocks\.\d+)\.mlp\.w1\.(weight|bias)$"), r"\1.mlp.fc1_g.\2"),
    (re.compile(r"^(blocks\.\d+)\.mlp\.w2\.(weight|bias)$"), r"\1.mlp.fc1_x.\2"),
    (re.compile(r"^(blocks\.\d+)\.mlp\.w3\.(weight|bias)$"), r"\1.mlp.fc2.\2"),
)
# Keys whose names Meta and timm share.
_SHARED = re.compile(
    r"^(cls_token|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
    r"|blocks\.\d+\.(norm1|norm2|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)|blocks\.\d+\.attn\.qkv\.weight)$"
)
_QKV_BIAS = re.compile(r"^(blocks\.\d+)\.attn\.qkv\.bias$")


def weights_file(path: str | Path) -> Path:
    """The file that holds the weights: ``path`` itself, or a Hugging Face snapshot folder's ``model.safetensors``."""
    path = Path(path)
    if path.is_dir() and ((path / WEIGHTS_FILE).exists() or (path / "config.json").exists()):
        return path / WEIGHTS_FILE
    return path


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file (``.pth``/``.pt`` through ``torch.load(weights_only=True)``, or ``.safetensors``).

    A file whose name ends in a SHA-256 prefix (Meta's ``...-08c60483.pth``) is checked against it first.

    Args:
        path: the file, or a Hugging Face snapshot folder (its ``model.safetensors``). A checkpoint wrapping its
            weights in ``model``, ``state_dict``, ``teacher`` or ``module`` is unwrapped.

    Returns:
        The flat state dict.

    Raises:
        InputError: naming the file, when it is missing, does not match the hash in its name, cannot be read safely
            as weights, or holds no tensors.
    """
    path = weights_file(path)
    if path.is_file() and path.stat().st_size > 0:  # else safe_load says what is wrong with it
        check_name_hash(path)
    state = safe_load(
        path,
        "DINOv3 weights file",
        "Pass Meta's DINOv3 .pth (e.g. dinov3_vits16_pretrain_lvd1689m-08c60483.pth), a timm .pth/.safetensors file "
        "or a Hugging Face snapshot folder (config.json and model.safetensors).",
    )
    for wrapper in ("model", "state_dict", "teacher", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path} holds no state dict of tensors; expected DINOv3 backbone weights (Meta's or timm's).")
    return {k.removeprefix("backbone."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def detect_layout(state: Mapping[str, torch.Tensor]) -> str:
    """Tell Meta's original key layout from timm's and Hugging Face ``transformers``'.

    Raises:
        InputError: when the keys are none of them.
    """
    if "storage_tokens" in state or any(k.endswith((".ls1.gamma", ".attn.qkv.bias_mask")) for k in state):
        return CheckpointLayout.META
    if "reg_token" in state or any(k.endswith(".gamma_1") for k in state):
        return CheckpointLayout.TIMM
    if is_transformers_state(state):
        return CheckpointLayout.TRANSFORMERS
    sample = ", ".join(sorted(state)[:5])
    raise InputError(
        f"Unrecognised checkpoint layout (first keys: {sample}). Expected Meta's DINOv3 keys (storage_tokens, "
        "blocks.N.ls1.gamma, ...), timm's (reg_token, blocks.N.gamma_1, ...) or Hugging Face transformers' "
        "(embeddings.cls_token, layer.N.attention.q_proj.weight, ...)."
    )


def meta_to_timm(
    state: Mapping[str, torch.Tensor], rope_periods: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Map Meta's DINOv3 keys to timm's, exactly.

    Meta's ``attn.qkv.bias`` is used through ``attn.qkv.bias_mask`` (1 for q and v, 0 for k): the effective bias is
    ``bias * bias_mask``. timm keeps q and v biases and a fixed zero k bias, so an effective k bias that is not zero
    cannot be represented and is an error rather than a silent change of every feature.

    Args:
        state: Meta's state dict.
        rope_periods: the RoPE periods the target model computes; when given, the file's ``rope_embed.periods`` must
            match them (a different RoPE base would change every feature).

    Returns:
        The state dict in timm's layout.

    Raises:
        ValueError: naming the first keys that do not map, or a bias or RoPE mismatch.
    """
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state.items():
        if key in _META_PRETRAIN_ONLY or key.startswith(_META_PRETRAIN_ONLY_PREFIXES):
            logger.debug("Skipping pretraining-only key %s", key)
            continue
        if key.endswith(".bias_mask"):
            continue
        if key == "rope_embed.periods":
            _check_rope_periods(value, rope_periods)
            continue
        if match := _QKV_BIAS.match(key):
            mask = state.get(f"{match[1]}.attn.qkv.bias_mask", torch.ones_like(value))
            q, k, v = (value * torch.nan_to_num(mask.to(value.dtype), nan=0.0)).chunk(3, dim=-1)
            if k.abs().max() > 0:
                raise ValueError(
                    f"{key}: the key part of the qkv bias is not masked out (bias_mask lets it through); "
                    "DINOv3 in timm has no key bias, so this checkpoint cannot be loaded exactly."
                )
            out[f"{match[1]}.attn.q_bias"], out[f"{match[1]}.attn.v_bias"] = q, v
            continue
        if _SHARED.match(key):
            out[key] = value
            continue
        for pattern, replacement in _META_RENAMES:
            if pattern.match(key):
                out[pattern.sub(replacement, key)] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise ValueError(f"{len(unmapped)} key(s) of the Meta checkpoint do not map to DINOv3 in timm: {unmapped[:8]}")
    return out


def _check_rope_periods(periods: torch.Tensor, expected: torch.Tensor | None) -> None:
    if expected is None:
        return
    if periods.shape != expected.shape or not torch.allclose(periods.float(), expected.float(), rtol=1e-4):
        raise ValueError(
            "rope_embed.periods in the checkpoint differ from the model's RoPE (another head size or RoPE base): "
            f"file {tuple(periods.shape)}, model {tuple(expected.shape)}."
        )


def describe_checkpoint(state: Mapping[str, torch.Tensor]) -> str:
    """A one-line description of the ViT a state dict (either layout) holds, for error messages."""
    token = state.get("cls_token")
    width = int(token.shape[-1]) if token is not None else None
    depth = len({int(m[1]) for k in state if (m := re.match(r"^blocks\.(\d+)\.", k))})
    swiglu = any(re.search(r"\.mlp\.(w1|fc1_g)\.", k) for k in state)
    ffn = "SwiGLU FFN" if swiglu else "MLP FFN"
    return f"embed_dim {width}, {depth} blocks, {ffn}"
