"""The paper's aligner + decoder folded into one 3x3 convolution and an exact bias map, for inference.

The paper head is linear end to end: per tap a 1x1 convolution (with bias) and a 3x3 convolution (no bias), then a
1x1 convolution over the concatenation. Composed, that is one 3x3 convolution from the concatenated taps to
``out_channels`` plus a bias term. The bias term is constant inside the image but differs on its border, because
the 3x3 convolutions zero-pad the (biased) projections: it is computed exactly by running the folded bias path over
a map of ones. Training keeps (and optimises) the factorised parameters, composing them differentiably every
step (:func:`fold_weights`); for inference the composition is cached in :class:`FoldedLinearHead`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from segdino_monai.networks.blocks.feature_aligner import FeatureAligner
from segdino_monai.networks.blocks.mlp_decoder import MLPDecoder

__all__ = ["FoldedLinearHead", "fold_weights", "folded_logits", "is_foldable"]


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
        """Fold a paper head for inference (composed in float64, stored in the head's dtype, no autograd).

        Raises:
            ValueError: when the head has a normalisation, an activation or a hidden layer (not linear).
        """
        dtype = decoder.layers[0].conv.weight.dtype
        with torch.no_grad():
            weight, bias_kernel, bias = fold_weights(aligner, decoder, torch.float64)
        return cls(weight.to(dtype), bias_kernel.to(dtype), bias.to(dtype))

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


def fold_weights(
    aligner: FeatureAligner, decoder: MLPDecoder, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Compose the paper head's factors into ``(weight, bias_kernel, bias)``, differentiably.

    The composition costs a few MFLOP whatever the batch, against about 1.1 GFLOP per 256x256 image for the
    factorised head, and autograd carries the gradients back to every factor: training through the folded form
    optimises exactly the same function of the same parameters.

    Args:
        aligner: the paper aligner.
        decoder: the paper decoder.
        dtype: computation dtype (default: the parameters').

    Raises:
        ValueError: when the head has a normalisation, an activation or a hidden layer (not linear).
    """
    if not is_foldable(aligner, decoder):
        raise ValueError("Only the paper's linear head folds (no norm, no act, no hidden layer).")
    out_conv = decoder.layers[0].conv
    dtype = dtype or out_conv.weight.dtype
    w_out = out_conv.weight.to(dtype)[:, :, 0, 0]  # (out, taps * aligned)
    aligned = aligner.aligns[0].conv.out_channels
    weights, bias_kernel = [], 0.0
    for i, (project, align) in enumerate(zip(aligner.projects, aligner.aligns, strict=True)):
        path = torch.einsum("om,mpxy->opxy", w_out[:, i * aligned : (i + 1) * aligned], align.conv.weight.to(dtype))
        weights.append(torch.einsum("opxy,pc->ocxy", path, project.conv.weight.to(dtype)[:, :, 0, 0]))
        bias_kernel = bias_kernel + torch.einsum("opxy,p->oxy", path, project.conv.bias.to(dtype))
    return torch.cat(weights, dim=1), bias_kernel.unsqueeze(1), out_conv.bias.to(dtype)


def folded_logits(
    features: Sequence[torch.Tensor], weight: torch.Tensor, bias_kernel: torch.Tensor, bias: torch.Tensor
) -> torch.Tensor:
    """Logits of the folded head from (possibly autograd-tracked) folded weights."""
    x = torch.cat(list(features), dim=1)
    ones = torch.ones(1, 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
    return F.conv2d(x, weight, padding=1) + F.conv2d(ones, bias_kernel, padding=1) + bias.view(1, -1, 1, 1)
