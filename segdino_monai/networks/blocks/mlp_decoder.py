"""The tiny MLP decoder head: a per-pixel map from aligned features to class logits."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["MLPDecoder"]


class MLPDecoder(nn.Module):
    """A per-pixel (1x1 convolution) head over the aligned features, giving logits on the token grid.

    Paper-faithful by default: one 1x1 convolution with bias. ``hidden_channels`` adds a hidden layer (with the
    optional ``norm`` and ``act``) for a non-linear variant.

    Args:
        in_channels: channels of the aligned features.
        out_channels: number of output channels (1 for binary with sigmoid, N classes with softmax).
        hidden_channels: width of an optional hidden layer; ``None`` for the paper's single layer.
        norm: optional MONAI norm name for the hidden layer.
        act: optional MONAI activation name for the hidden layer (``"relu"`` when a hidden layer has none given).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int | None = None,
        norm: str | tuple | None = None,
        act: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if out_channels < 1:
            raise ValueError(f"out_channels must be at least 1, got {out_channels}.")
        layers: list[nn.Module] = []
        if hidden_channels is not None:
            layers.append(Convolution(2, in_channels, hidden_channels, kernel_size=1, norm=norm, act=act or "relu"))
            in_channels = hidden_channels
        layers.append(Convolution(2, in_channels, out_channels, kernel_size=1, bias=True, conv_only=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, out_channels, h, w)``."""
        return self.layers(x)
