"""The frozen DINOv3 ViT backbone adapter (timm's DINOv3 models, weights from a local file or snapshot folder).

DINOv3: Siméoni et al., "DINOv3", arXiv 2508.10104. Meta's DINOv3 weights are released under the DINOv3 License;
users download them themselves and pass the local path.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from segdino_monai.networks.blocks.rope_attention import use_rope_attention
from segdino_monai.networks.weights.checkpoint_layouts import (
    CheckpointLayout,
    describe_checkpoint,
    detect_layout,
    load_weights_file,
    meta_to_timm,
)
from segdino_monai.networks.weights.transformers_layout import (
    check_config,
    read_config,
    transformers_name,
    transformers_to_timm,
)
from segdino_monai.utils.errors import InputError

__all__ = ["DINOV3_ARCHS", "PRECISIONS", "DINOv3Backbone", "default_taps", "use_bf16"]

logger = logging.getLogger(__name__)

# Meta's hub names (as in the weight file names) -> timm model stems. The `_qkvb` variants keep q/v biases.
DINOV3_ARCHS: dict[str, str] = {
    "vits16": "vit_small_patch16_dinov3",
    "vits16plus": "vit_small_plus_patch16_dinov3",
    "vitb16": "vit_base_patch16_dinov3",
    "vitl16": "vit_large_patch16_dinov3",
    "vith16plus": "vit_huge_plus_patch16_dinov3",
}
_ALIASES = {
    "small": "vits16",
    "small_plus": "vits16plus",
    "base": "vitb16",
    "large": "vitl16",
    "huge_plus": "vith16plus",
}

# The reference tap sets of SegDINO and DINOv3's segmentation evaluation, by depth.
_REFERENCE_TAPS = {12: (2, 5, 8, 11), 24: (4, 11, 17, 23), 40: (9, 19, 29, 39)}
TIMM_HUB_WEIGHTS = "timm-hub"
PRECISIONS = ("float32", "bfloat16", "auto")
RANDOM_BACKBONE_SEED = 0


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether ``precision`` means bfloat16 autocast on ``device`` (``"auto"``: where it is fast)."""
    if precision != "auto":
        return precision == "bfloat16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    cpu = getattr(torch, "cpu", None)
    return device.type == "cpu" and bool(cpu and (cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported()))


def default_taps(depth: int, num_taps: int = 4) -> tuple[int, ...]:
    """The blocks to tap: the reference sets for 12/24/40 blocks, otherwise evenly spaced ending at the last block."""
    if num_taps == 4 and depth in _REFERENCE_TAPS:
        return _REFERENCE_TAPS[depth]
    if not 1 <= num_taps <= depth:
        raise ValueError(f"num_taps must be in [1, {depth}] for a {depth}-block ViT, got {num_taps}.")
    return tuple((i + 1) * depth // num_taps - 1 for i in range(num_taps))


class DINOv3Backbone(nn.Module):
    """A frozen DINOv3 ViT that returns the feature maps of a few tapped blocks.

    Frozen for real: every parameter has ``requires_grad=False``, the model stays in ``eval()`` whatever
    ``train()`` is called with, and the forward runs under ``torch.no_grad()`` so training stores no backbone
    activations. Its weights come from the file named at construction and are left out of this module's
    ``state_dict()`` (a SegDINO checkpoint then holds the trainable decoder only); ``load_state_dict`` keeps them.

    Args:
        arch: ``vits16``, ``vits16plus``, ``vitb16``, ``vitl16``, ``vith16plus`` (or ``small``, ``base``, ...), or the
            name of a timm DINOv3 model.
        weights: a local weights file in Meta's original layout (e.g. ``dinov3_vits16_pretrain_lvd1689m-08c60483.pth``)
            or timm's (``.safetensors`` or ``.pth``), a Hugging Face ``transformers`` snapshot folder
            (``config.json`` and ``model.safetensors`` of ``DINOv3ViTModel``) or its ``model.safetensors``; a name
            ending in a SHA-256 prefix (``-08c60483.pth``) is checked against the file's content;
            ``"timm-hub"`` for timm's hub weights (needs the network);
            ``None`` for a random backbone (for tests only: its features are meaningless).
        taps: 0-based indices of the blocks whose outputs are returned; default: see :func:`default_taps`.
        precision: ``"float32"``, ``"bfloat16"`` (a bfloat16 copy of the frozen weights) or ``"auto"``: bfloat16
            where the device runs it fast (CUDA with bf16, or a CPU with AVX512-BF16/AMX), else float32. The maps
            are returned in float32.
        model_kwargs: overrides passed to ``timm.create_model`` (e.g. ``embed_dim``, ``depth``, ``num_heads`` for a
            tiny test model of the same architecture).

    Example::

        backbone = DINOv3Backbone("vits16", weights="dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
        maps = backbone(torch.rand(1, 3, 256, 256))  # 4 tensors of shape (1, 384, 16, 16)
    """

    def __init__(
        self,
        arch: str = "vits16",
        weights: str | Path | None = None,
        taps: Sequence[int] | None = None,
        precision: str = "float32",
        **model_kwargs: Any,
    ) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.weights_source = "random" if weights is None else str(weights)  # what the features come from
        self._bf16_models: dict[str, nn.Module] = {}  # not submodules: no state_dict entries, never trained
        self._warned_slow_bf16 = False
        name = self._timm_name(arch)
        state, layout = None, None
        if weights is not None and str(weights) != TIMM_HUB_WEIGHTS:
            state, layout = self._read(weights)
            if layout != CheckpointLayout.META and name.endswith("_qkvb") and "blocks.0.attn.q_bias" not in state:
                name = name.removesuffix("_qkvb")  # a file of the plain (bias-free) variant
        self.model = self._create(name, pretrained=str(weights) == TIMM_HUB_WEIGHTS, **model_kwargs)
        use_rope_attention(self.model)  # the same attention, fewer memory passes in inference
        if layout == CheckpointLayout.TRANSFORMERS:
            self._check_config(weights, _ALIASES.get(arch, arch))
        if state is not None:
            self._load(state, layout, str(weights), name)
        elif weights is None:
            logger.warning(
                "DINOv3 backbone %s is RANDOMLY INITIALISED: no weights file was given, so its features are "
                "meaningless. Pass weights=<path to e.g. dinov3_vits16_pretrain_lvd1689m-08c60483.pth>.",
                name,
            )
        depth = len(self.model.blocks)
        self.taps = tuple(int(i) for i in (taps if taps is not None else default_taps(depth)))
        if not self.taps or any(not 0 <= i < depth for i in self.taps) or list(self.taps) != sorted(set(self.taps)):
            raise ValueError(f"taps must be increasing, unique block indices in [0, {depth - 1}], got {list(taps)}.")
        self.arch = name
        self.model.prune_intermediate_layers(list(self.taps), prune_norm=False, prune_head=True)
        self.model.requires_grad_(False)
        self.model.eval()
        self.register_state_dict_post_hook(_drop_frozen_weights)
        self.register_load_state_dict_pre_hook(_keep_frozen_weights)

    @property
    def embed_dim(self) -> int:
        """Channels of every returned feature map."""
        return int(self.model.embed_dim)

    @property
    def patch_size(self) -> int:
        """Input pixels per token along each side: inputs must be multiples of it; outputs are this much smaller."""
        return int(self.model.patch_embed.patch_size[0])

    @property
    def out_channels(self) -> list[int]:
        """Channels of each returned map, one entry per tap."""
        return [self.embed_dim] * len(self.taps)

    def train(self, mode: bool = True) -> DINOv3Backbone:
        """Set this module's mode; the frozen ViT itself always stays in ``eval()``."""
        super().train(mode)
        self.model.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the final-normed, prefix-token-free NCHW maps ``(B, embed_dim, H/16, W/16)`` of each tap."""
        # inference_mode is cheaper than no_grad, but its tensors cannot be saved for backward (use it only where
        # nothing downstream trains) and torch.compile's inductor refuses them.
        plain = torch.is_grad_enabled() or torch.compiler.is_compiling()
        no_autograd = torch.no_grad() if plain else torch.inference_mode()
        bf16 = use_bf16(self.precision, x.device)
        if bf16 and x.device.type == "cpu" and not self._warned_slow_bf16 and not use_bf16("auto", x.device):
            self._warned_slow_bf16 = True
            logger.warning(
                "precision 'bfloat16' on a CPU without native bf16 (no AVX512-BF16 or AMX; this one runs %s): bf16 "
                "runs about 100x slower than float32 here. Use precision 'auto' or 'float32'.",
                torch.backends.cpu.get_cpu_capability(),
            )
        model = self._bf16_model(x.device) if bf16 else self.model
        with no_autograd:
            maps = model.forward_intermediates(
                x.to(torch.bfloat16) if bf16 else x,
                indices=list(self.taps),
                norm=True,
                output_fmt="NCHW",
                intermediates_only=True,
            )
        return [m.float() for m in maps] if bf16 else maps

    def _bf16_model(self, device: torch.device) -> nn.Module:
        """A bfloat16 copy of the frozen ViT on ``device``, made once (the weights never change).

        A copy held in bfloat16 runs about 2.5x faster than float32 on a CPU with AMX, where autocast (which casts
        the weights at every call and keeps norms in float32) reaches about 1.5x. The RoPE periods stay float32.
        """
        key = str(device)
        if key not in self._bf16_models:
            model = copy.deepcopy(self.model).to(device=device, dtype=torch.bfloat16).eval()
            rope = getattr(model, "rope", None)
            if rope is not None and hasattr(rope, "periods"):
                rope.periods = self.model.rope.periods.to(device)
            self._bf16_models[key] = model
        return self._bf16_models[key]

    @staticmethod
    def _timm_name(arch: str) -> str:
        arch = _ALIASES.get(arch, arch)
        if arch in DINOV3_ARCHS:
            return f"{DINOV3_ARCHS[arch]}_qkvb"
        if "dinov3" in arch and arch in timm.list_models("*dinov3*"):
            return arch
        raise InputError(f"Unknown DINOv3 backbone {arch!r}; choose one of {sorted(DINOV3_ARCHS)} or a timm name.")

    @staticmethod
    def _create(name: str, pretrained: bool, **model_kwargs: Any) -> nn.Module:
        try:
            # A fixed seed makes a random backbone the same in every process (training, a later evaluation, DDP
            # ranks) without touching the caller's random state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_BACKBONE_SEED)
                return timm.create_model(name, pretrained=pretrained, num_classes=0, **model_kwargs)
        except OSError as err:  # huggingface_hub's and urllib's download errors are all OSErrors
            if not pretrained:
                raise
            raise InputError(
                f"Could not fetch timm's hub weights for {name} ({err}). Offline, download Meta's or timm's weights "
                "file once and pass its local path as weights."
            ) from err

    @staticmethod
    def _read(weights: str | Path) -> tuple[dict[str, torch.Tensor], str]:
        """The file's state dict (Hugging Face keys already in timm's layout, Meta's not yet) and its layout."""
        state = load_weights_file(weights)
        try:
            layout = detect_layout(state)
        except InputError as err:
            raise InputError(f"DINOv3 weights file {weights}: {err}") from err
        if layout == CheckpointLayout.TRANSFORMERS:
            try:
                state = transformers_to_timm(state)
            except ValueError as err:
                raise InputError(f"DINOv3 weights {weights}: {err}") from err
        return state, layout

    def _check_config(self, weights: str | Path, backbone: str) -> None:
        """Check a Hugging Face snapshot's ``config.json`` (where there is one) against the model."""
        config, path = read_config(weights)
        if config is None:
            logger.info(
                "%s has no config.json beside it: the backbone's size is checked from the weights alone.", weights
            )
        else:
            check_config(config, self.model, path, backbone)

    def _load(self, state: dict[str, torch.Tensor], layout: str | None, source: str, name: str) -> None:
        expected = self.model.state_dict()
        wanted = f"{name} ({describe_checkpoint(expected)})"
        found = describe_checkpoint(state)
        if found != describe_checkpoint(expected):
            raise InputError(
                f"{source} holds a ViT with {found}, but the backbone is {wanted}. Choose the backbone that matches "
                "the file (vits16: embed_dim 384, 12 blocks; vits16plus: 384, 12, SwiGLU; vitb16: 768, 12; "
                "vitl16: 1024, 24; vith16plus: 1280, 32, SwiGLU)."
            )
        if layout == CheckpointLayout.META:
            try:
                state = meta_to_timm(state, rope_periods=getattr(self.model.rope, "periods", None))
            except ValueError as err:
                raise InputError(f"DINOv3 weights file {source}: {err}") from err
        wrong_shape = sorted(k for k in state.keys() & expected.keys() if state[k].shape != expected[k].shape)
        if wrong_shape:
            raise InputError(f"{source} does not fit the backbone {wanted}: shapes differ for {wrong_shape[:5]}.")
        result = self.model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            missing, unexpected = result.missing_keys[:8], result.unexpected_keys[:8]
            if layout == CheckpointLayout.TRANSFORMERS:  # name them as they are (or would be) in the file
                missing, unexpected = [[transformers_name(k) for k in keys] for keys in (missing, unexpected)]
            raise InputError(
                f"{source} ({layout} layout, {found}) does not fit the backbone {wanted}: "
                f"missing keys {missing}, unexpected keys {unexpected}."
            )
        logger.info("Loaded DINOv3 weights from %s (%s layout) into %s", source, layout, name)


def _drop_frozen_weights(module: nn.Module, state_dict: dict, prefix: str, local_metadata: Mapping) -> None:
    """``state_dict`` post-hook: the frozen ViT weights live in their own file, not in decoder checkpoints."""
    for key in [k for k in state_dict if k.startswith(f"{prefix}model.")]:
        del state_dict[key]


def _keep_frozen_weights(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: fill the frozen weights a decoder checkpoint lacks with the loaded ones."""
    module._bf16_models.clear()  # a checkpoint that does carry backbone weights would make the copies stale
    for key, value in module.model.state_dict().items():
        state_dict.setdefault(f"{prefix}model.{key}", value)
