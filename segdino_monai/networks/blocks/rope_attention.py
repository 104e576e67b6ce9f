"""DINOv3 attention with a cheaper rotary embedding on the CPU: the same function as timm's, in fewer memory passes.

timm's ``EvaAttention`` applies DINOv3's rotate-half RoPE to the patch tokens of q and k as slice, multiply, chunk,
negate, concatenate, multiply, add, and concatenates the prefix tokens back: about six passes over each tensor, on
strided views of the fused qkv output. In fp32 inference on a CPU these elementwise passes took about a quarter of
the time of ViT-S/16 (profile in ``docs/benchmarks.md``). :class:`RopeAttention` computes the same values
(``x * cos + rotate_half(x) * sin``, the products and sum rounded in the same order) straight into one contiguous
buffer per tensor: one multiply, and one multiply-add per half.

Attention modules of another configuration (a gate, q/k norms, a separate qkv bias, rope in another dtype than the
activations), training and ``torch.compile`` (which fuses timm's passes itself) run timm's own forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.eva import EvaAttention
from torch import nn

__all__ = ["RopeAttention", "use_rope_attention"]


def _rope(t: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, prefix: int) -> torch.Tensor:
    """``t`` (B, heads, N, D) with rotate-half RoPE on its tokens after the ``prefix`` ones, as a contiguous tensor."""
    out = torch.empty(t.shape, dtype=t.dtype, device=t.device)
    out[:, :, :prefix] = t[:, :, :prefix]
    body, rotated = t[:, :, prefix:], out[:, :, prefix:]
    half = t.shape[-1] // 2
    torch.mul(body, cos, out=rotated)
    rotated[..., :half].addcmul_(body[..., half:], sin[..., :half], value=-1)  # rotate_half: (-x2, x1)
    rotated[..., half:].addcmul_(body[..., :half], sin[..., half:])
    return out


class RopeAttention(EvaAttention):
    """timm's ``EvaAttention`` with :func:`_rope`; instances are converted in place by :func:`use_rope_attention`."""

    def _supported(self, x: torch.Tensor, rope: torch.Tensor | None) -> bool:
        plain = self.gate is None and isinstance(self.q_norm, nn.Identity) and isinstance(self.k_norm, nn.Identity)
        plain = plain and isinstance(self.norm, nn.Identity) and self.qkv is not None and not self.qkv_bias_separate
        return (
            plain
            and self.fused_attn
            and not self.training
            and not torch.compiler.is_compiling()  # inductor fuses timm's own passes
            and getattr(self, "rotate_half", False)
            and rope is not None
            and rope.dtype == x.dtype
        )

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
    ) -> torch.Tensor:
        """Attention over ``x`` (B, N, C) as timm's, with :func:`_rope` where supported (see the module docs)."""
        if not self._supported(x, rope):
            return super().forward(x, rope=rope, attn_mask=attn_mask, is_causal=is_causal)
        batch, tokens, channels = x.shape
        bias = self.qkv.bias if self.q_bias is None else torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        sin, cos = rope.chunk(2, -1)
        q = _rope(q, sin, cos, self.num_prefix_tokens)
        k = _rope(k, sin, cos, self.num_prefix_tokens)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, channels))


def use_rope_attention(model: nn.Module) -> int:
    """Make every ``EvaAttention`` of ``model`` a :class:`RopeAttention` (same parameters); returns how many."""
    count = 0
    for module in model.modules():
        if type(module) is EvaAttention:
            module.__class__ = RopeAttention
            count += 1
    return count
