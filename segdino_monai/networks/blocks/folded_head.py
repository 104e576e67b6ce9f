"""The paper's aligner + decoder folded into one 3x3 convolution and an exact bias map, for inference.

The paper head is linear end to end: per tap a 1x1 convolution (with bias) and a 3x3 convolution (no bias), then a
1x1 convolution over the concatenation. Composed, that is one 3x3 convolution from the concatenated taps to
``out_channels`` plus a bias term. The bias term is constant inside the image but differs on its border, because
the 3x3 convolutions zero-pad the (biased) projections: it is computed exactly by running the folded bias path over
a map of ones. Training keeps the factorised parameters; this module is rebuilt from them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segdino_monai.networks.blocks.feature_aligner import FeatureAligner
from segdino_monai.networks.blocks.mlp_decoder import MLPDecoder

__all__ = ["FoldedLinearHead", "is_foldable"]


def is_foldable(aligner: FeatureAligner, decoder: MLPDecoder) -> bool:
    """Whether the head is the paper's linear one (no normalisation, no activation, no hidden layer)."""
    plain_aligns = all(len(list(align.children())) == 1 for align in aligner.aligns)  # the conv alone
    return plain_aligns and len(decoder.layers) == 1


class FoldedLinearHead(nn.Module):
    """One 3x3 convolution over the concatenated taps plus a border-exact bias map, equal to the paper head.

    Args:
        weight: ``(out_channels, taps * embed_dim, 3, 3)`` folded kernel.
        bias_kernel: ``(out_channels, 1, 3, 3)`` kernel of the bias path, applied to a map of ones.
        bias: ``(out_channels,)`` bias of the final 1x1 convolution.
    """

    def __init__(self, weight: torch.Tensor, bias_kernel: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias_kernel", bias_kernel)
        self.register_buffer("bias", bias)
        self._bias_maps: dict[tuple, torch.Tensor] = {}

    @classmethod
    def from_head(cls, aligner: FeatureAligner, decoder: MLPDecoder) -> FoldedLinearHead:
        """Fold a paper head (computed in float64, stored in the head's dtype).

        Raises:
            ValueError: when the head has a normalisation, an activation or a hidden layer (not linear).
        """
        if not is_foldable(aligner, decoder):
            raise ValueError("Only the paper's linear head folds (no norm, no act, no hidden layer).")
        out_conv = decoder.layers[0].conv
        dtype = out_conv.weight.dtype
        w_out = out_conv.weight.detach().double()[:, :, 0, 0]  # (out, taps * aligned)
        aligned = aligner.aligns[0].conv.out_channels
        weights, bias_kernel = [], 0.0
        for i, (project, align) in enumerate(zip(aligner.projects, aligner.aligns, strict=True)):
            w1 = project.conv.weight.detach().double()[:, :, 0, 0]  # (p, C)
            b1 = project.conv.bias.detach().double()  # (p,)
            w3 = align.conv.weight.detach().double()  # (aligned, p, 3, 3)
            w_o = w_out[:, i * aligned : (i + 1) * aligned]  # (out, aligned)
            path = torch.einsum("om,mpxy->opxy", w_o, w3)  # (out, p, 3, 3)
            weights.append(torch.einsum("opxy,pc->ocxy", path, w1))
            bias_kernel = bias_kernel + torch.einsum("opxy,p->oxy", path, b1)
        weight = torch.cat(weights, dim=1).to(dtype)
        return cls(weight, bias_kernel.unsqueeze(1).to(dtype), out_conv.bias.detach().clone())

    def bias_map(self, height: int, width: int) -> torch.Tensor:
        """The exact bias of every output position for a ``height x width`` token grid (cached per size)."""
        key = (height, width, self.weight.device, self.weight.dtype)
        if key not in self._bias_maps:
            ones = torch.ones(1, 1, height, width, device=self.weight.device, dtype=self.weight.dtype)
            self._bias_maps[key] = F.conv2d(ones, self.bias_kernel, padding=1) + self.bias.view(1, -1, 1, 1)
        return self._bias_maps[key]

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return logits ``(B, out_channels, h, w)`` on the token grid; all taps must share that grid."""
        x = torch.cat(list(features), dim=1)
        return F.conv2d(x, self.weight, padding=1) + self.bias_map(*x.shape[-2:])
