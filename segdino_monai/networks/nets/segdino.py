"""SegDINO: a frozen DINOv3 ViT, a feature aligner and a tiny MLP decoder (arXiv 2509.00833)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from segdino_monai.networks.blocks.feature_aligner import FeatureAligner
from segdino_monai.networks.blocks.folded_head import FoldedLinearHead, fold_weights, folded_logits, is_foldable
from segdino_monai.networks.blocks.mlp_decoder import MLPDecoder
from segdino_monai.networks.nets.dinov3_backbone import DINOv3Backbone
from segdino_monai.networks.weights.safe_load import safe_load
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.errors import InputError

__all__ = ["SegDINO"]

logger = logging.getLogger(__name__)

#: DINOv3 sizes by the width of their features, to name the backbone a decoder was trained on.
_BACKBONES_BY_WIDTH = {384: ["vits16", "vits16plus"], 768: ["vitb16"], 1024: ["vitl16"], 1280: ["vith16plus"]}


class SegDINO(nn.Module):
    """2D segmentation with a frozen DINOv3 backbone, returning logits at the input resolution.

    With ``backbone="vits16"``, the default decoder and one output channel the network has exactly 2,213,793
    trainable parameters (the paper's 2.21 M). Its ``state_dict()`` holds the trainable parts only; the backbone
    weights stay in their own file.

    Args:
        spatial_dims: must be 2.
        in_channels: must be 3 (DINOv3 takes RGB; repeat grey images to 3 channels first).
        out_channels: 1 for binary segmentation (sigmoid), N for N classes (softmax).
        backbone: DINOv3 size (``vits16``, ``vits16plus``, ``vitb16``, ``vitl16``, ``vith16plus``) or a timm name.
        weights: the backbone's local weights file (Meta's or timm's layout); ``None`` for a random backbone.
        taps: 0-based indices of the tapped blocks; default ``[2, 5, 8, 11]`` for 12 blocks, ``[4, 11, 17, 23]``
            for 24.
        proj_channels: per-tap widths of the aligner's 1x1 projections.
        aligned_channels: the aligner's common width.
        hidden_channels: an optional hidden layer in the decoder head (a variant; ``None`` is the paper).
        norm: optional MONAI norm in the aligner and hidden layer (a variant; ``None`` is the paper).
        act: optional MONAI activation in the aligner and hidden layer (a variant; ``None`` is the paper).
        align_corners: of the final bilinear upsampling. ``False`` (default) puts each token's value at the centre of
            its 16x16 patch; the reference code uses ``True``, which shifts borders by up to half a patch.
        fold_head: run the paper head folded into one 3x3 convolution (identical output, far less work): in training
            the factorised parameters are composed differentiably every step, in eval the composition is cached and
            rebuilt whenever a parameter changes. Non-linear variants never fold.
        backbone_precision: ``"float32"``, ``"bfloat16"`` or ``"auto"`` autocast of the frozen backbone (see
            :class:`DINOv3Backbone`); the head always runs in float32.
        backbone_kwargs: overrides for ``timm.create_model`` (tests use a tiny model of the same architecture).

    Example::

        net = SegDINO(out_channels=1, backbone="vits16", weights="dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
        logits = net(torch.rand(2, 3, 256, 256))  # (2, 1, 256, 256)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        backbone: str = "vits16",
        weights: str | Path | None = None,
        taps: Sequence[int] | None = None,
        proj_channels: Sequence[int] = (96, 192, 384, 768),
        aligned_channels: int = 128,
        hidden_channels: int | None = None,
        norm: str | tuple | None = None,
        act: str | tuple | None = None,
        align_corners: bool = False,
        fold_head: bool = True,
        backbone_precision: str = "float32",
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 2:
            raise InputError(f"SegDINO is a 2D network: spatial_dims must be 2, got {spatial_dims}.")
        if in_channels != 3:
            raise InputError(
                f"DINOv3 takes RGB input: in_channels must be 3, got {in_channels}. Repeat grey images to 3 channels "
                "in preprocessing (e.g. monai.transforms.RepeatChanneld(repeats=3))."
            )
        self.out_channels = out_channels
        self.align_corners = align_corners
        self.backbone = DINOv3Backbone(
            backbone, weights=weights, taps=taps, precision=backbone_precision, **dict(backbone_kwargs or {})
        )
        self.aligner = FeatureAligner(self.backbone.out_channels, proj_channels, aligned_channels, norm=norm, act=act)
        self.decoder = MLPDecoder(self.aligner.out_channels, out_channels, hidden_channels, norm=norm, act=act)
        self.fold_head = fold_head and is_foldable(self.aligner, self.decoder)
        self._folded: tuple[tuple, FoldedLinearHead] | None = None

    @property
    def patch_size(self) -> int:
        """Input height and width must be multiples of this."""
        return self.backbone.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, out_channels, H, W)`` for images ``(B, 3, H, W)``, H and W multiples of the patch."""
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self._check_input(x)
        return self.decode(self.backbone(x), x.shape[-2:])

    def decode(self, features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """Logits at ``size`` from the backbone's tapped maps (what training from cached features runs)."""
        same_grid = all(f.shape[-2:] == features[0].shape[-2:] for f in features)
        # a trace, torch.export (ONNX) or torch.compile must not see the fold's cache (keyed by data pointers)
        exporting = torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
        if self.fold_head and same_grid:
            if self.training or exporting:  # the same function of the same factorised parameters, far cheaper
                logits = folded_logits(features, *fold_weights(self.aligner, self.decoder))
            else:
                logits = self.folded_head()(features)
        else:
            logits = self.decoder(self.aligner(features))
        return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=self.align_corners)

    def folded_head(self) -> FoldedLinearHead:
        """The head folded from the current parameters, rebuilt when any of them changed (in-place version)."""
        params = [*self.aligner.parameters(), *self.decoder.parameters()]
        key = tuple((p.data_ptr(), p._version, p.device, p.dtype) for p in params)
        if self._folded is None or self._folded[0] != key:
            self._folded = (key, FoldedLinearHead.from_head(self.aligner, self.decoder))
        return self._folded[1]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"SegDINO expects images of shape (B, 3, H, W), got {tuple(x.shape)}.")
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"Input height and width must be multiples of the patch size {self.patch_size}, got {h}x{w}. "
                f"Pad or resize first (e.g. monai.transforms.DivisiblePadd(k={self.patch_size}), or a "
                "SlidingWindowInferer with a roi_size that is a multiple of it)."
            )

    def save_decoder(self, path: str | Path) -> Path:
        """Write the trainable state (aligner and decoder, a few MB) atomically to ``path``."""
        return atomic_write(path, lambda tmp: torch.save(self.state_dict(), tmp))

    def load_decoder(self, path: str | Path) -> None:
        """Load a trainable state written by :meth:`save_decoder` (or a MONAI checkpoint holding it).

        The file is read with ``torch.load(weights_only=True)``; a checkpoint that wraps the state in ``network``
        or ``model`` (MONAI's and Ignite's checkpoint savers) is unwrapped.

        Raises:
            InputError: naming the file when it is missing, unreadable, or does not fit this network: a decoder
                trained for another number of classes or on another backbone size says which option to pass.
        """
        path = Path(path)
        hint = "Train first (`segdino train` writes models/model.pt), or pass the model.pt of a trained bundle."
        state = safe_load(path, "Decoder checkpoint", hint)
        for wrapper in ("network", "model"):
            if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise InputError(f"Decoder checkpoint {path} holds no state dict of tensors. {hint}")
        own = self.state_dict()
        wrong = {
            k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if k in own and v.shape != own[k].shape
        }
        missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
        if wrong or missing or unexpected:
            raise InputError(
                f"Decoder checkpoint {path} does not fit this SegDINO (out_channels={self.out_channels}, backbone "
                f"{self.backbone.arch}): {self._mismatch(state, wrong, missing, unexpected)}"
            )
        self.load_state_dict(state)
        logger.info("Loaded decoder weights from %s", path)

    def _mismatch(
        self, state: Mapping[str, torch.Tensor], wrong: dict[str, Any], missing: list[str], unexpected: list[str]
    ) -> str:
        """What differs between a decoder file and this network, in the options a user sets."""
        head = [k for k in self.state_dict() if k.startswith("decoder.") and k.endswith(".weight")][-1]
        if head in wrong:
            classes = wrong[head][0][0]
            return (
                f"it was trained for {classes} output channel(s), this network has {self.out_channels}. Pass "
                f"--num_classes {classes} (segdino: --num-classes {classes}), as in its training."
            )
        first = "aligner.projects.0.conv.weight"
        if first in wrong:
            width, own_width = wrong[first][0][1], wrong[first][1][1]
            names = " or ".join(_BACKBONES_BY_WIDTH.get(width, [f"a ViT with embed_dim {width}"]))
            return (
                f"it was trained on {names} features (embed_dim {width}), this backbone has embed_dim {own_width}. "
                f"Pass --backbone {names.split(' or ')[0]} and its weights, as in its training."
            )
        return (
            f"shape (file, network) differs for {dict(list(wrong.items())[:4])}, missing {missing[:6]}, unexpected "
            f"{unexpected[:6]}. Build the network with the options it was trained with."
        )
