"""The feature aligner: brings tapped ViT feature maps to one grid and one width."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["FeatureAligner"]


class FeatureAligner(nn.Module):
    """Project each tapped map to its own width, then to a common width, resize to the first grid and concatenate.

    Paper-faithful by default (SegDINO, arXiv 2509.00833): per tap a 1x1 convolution with bias to
    ``proj_channels[i]`` and a 3x3 convolution without bias to ``aligned_channels``, no normalisation and no
    non-linearity. ``norm``/``act`` add them after the 3x3 convolution (a variant, not the paper).

    Args:
        in_channels: channels of each tapped map.
        proj_channels: per-tap widths of the 1x1 projections; one entry per tap.
        aligned_channels: the common width after the 3x3 convolutions.
        norm: optional MONAI norm name (e.g. ``"batch"``, ``("group", {"num_groups": 8})``).
        act: optional MONAI activation name (e.g. ``"gelu"``).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        proj_channels: Sequence[int] = (96, 192, 384, 768),
        aligned_channels: int = 128,
        norm: str | tuple | None = None,
        act: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if len(in_channels) != len(proj_channels):
            raise ValueError(
                f"proj_channels needs one width per tapped block: {len(in_channels)} taps, "
                f"{len(proj_channels)} widths ({list(proj_channels)})."
            )
        self.out_channels = aligned_channels * len(in_channels)
        self.projects = nn.ModuleList(
            Convolution(2, c_in, c_proj, kernel_size=1, bias=True, conv_only=True)
            for c_in, c_proj in zip(in_channels, proj_channels, strict=True)
        )
        plain = norm is None and act is None
        self.aligns = nn.ModuleList(
            Convolution(2, c_proj, aligned_channels, kernel_size=3, bias=False, norm=norm, act=act, conv_only=plain)
            for c_proj in proj_channels
        )

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the concatenated aligned maps ``(B, aligned_channels * taps, h, w)`` on the first map's grid."""
        size = features[0].shape[-2:]
        aligned = []
        for feature, project, align in zip(features, self.projects, self.aligns, strict=True):
            y = align(project(feature))
            if y.shape[-2:] != size:  # a no-op for plain ViTs, whose taps share the 1/16 grid
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            aligned.append(y)
        return torch.cat(aligned, dim=1)
