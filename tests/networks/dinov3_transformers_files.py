"""Random Hugging Face transformers DINOv3 ViTs (DINOv3ViTModel) and their own features, for the loading tests."""

from __future__ import annotations

import os
from types import ModuleType

import pytest
import torch

# The published configs (facebook/dinov3-*-pretrain-lvd1689m): hidden_size, heads, intermediate_size, layers, gated.
SIZES = {
    "vits16": (384, 6, 1536, 12, False),
    "vits16plus": (384, 6, 1536, 12, True),
    "vitb16": (768, 12, 3072, 12, False),
    "vitl16": (1024, 16, 4096, 24, False),
    "vith16plus": (1280, 20, 5120, 32, True),
}


def require_transformers() -> ModuleType:
    """transformers (extra `dev`): skipped where absent unless SEGDINO_REQUIRE_FIXTURES=1 (CI installs it)."""
    try:
        import transformers
    except ImportError:
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            pytest.fail("SEGDINO_REQUIRE_FIXTURES=1 but transformers (extra dev) is not installed")
        pytest.skip("transformers not installed (pip install -e .[dev]): Hugging Face weights not checked")
    return transformers


def hf_config(transformers: ModuleType, arch: str, depth: int | None = None, **overrides):
    """The config of a published size, with ``depth`` blocks and any other value overridden."""
    hidden, heads, intermediate, layers, gated = SIZES[arch]
    values = dict(
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        num_hidden_layers=depth or layers,
        num_register_tokens=4,
        use_gated_mlp=gated,
        hidden_act="silu" if gated else "gelu",
    )
    return transformers.DINOv3ViTConfig(**{**values, **overrides})


def hf_model(transformers: ModuleType, arch: str, depth: int, **overrides) -> torch.nn.Module:
    """A random DINOv3ViTModel with every bias, LayerScale, norm and token far from its init."""
    torch.manual_seed(0)
    model = transformers.DINOv3ViTModel(hf_config(transformers, arch, depth, **overrides)).eval()
    with torch.no_grad():
        for key, param in model.named_parameters():
            if key.endswith(("bias", "lambda1", "cls_token", "register_tokens")) or "norm" in key:
                param.copy_(torch.randn_like(param) * 0.5)
    return model


def hf_features(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """transformers' hidden states of every block after its final norm, prefix tokens dropped, as NCHW maps."""
    with torch.no_grad():
        states = model(x, output_hidden_states=True).hidden_states[1:]  # [0] is the embedding output
    prefix = 1 + model.config.num_register_tokens
    h, w = x.shape[2] // model.config.patch_size, x.shape[3] // model.config.patch_size
    return [model.norm(s)[:, prefix:].unflatten(1, (h, w)).permute(0, 3, 1, 2) for s in states]


def relative_errors(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> list[float]:
    """Per map ``|ours - reference| / |reference|`` (Frobenius norms); the shapes must agree."""
    assert [a.shape for a in ours] == [r.shape for r in reference]
    return [((a - r).norm() / r.norm()).item() for a, r in zip(ours, reference, strict=True)]
