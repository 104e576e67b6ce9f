"""Resizing for the network: PIL's resampling as the reference code does it, shrinking the longest side to a size."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import (
    MapTransform,
    Resize,
    Resized,
)
from monai.transforms.spatial.functional import resize
from monai.transforms.utils import scale_affine
from monai.utils import (
    MetaKeys,
    TraceKeys,
    ensure_tuple_rep,
    get_equivalent_dtype,
)
from PIL import Image

from segdino_monai.transforms.utils import to_numpy

__all__ = ["PATCH_SIZE", "PILResized", "ShrinkLongest", "ShrinkLongestd"]

#: the ViT patch size: network inputs must be multiples of it.
PATCH_SIZE = 16


class PILResized(MapTransform):
    """Resize ``(C, H, W)`` arrays with Pillow's ``Image.resize``, channel by channel, on 8-bit values.

    This is the resize of the SegDINO reference code (``PIL.Image.resize`` of 8-bit images): Pillow's bicubic
    filter widens with the scale when shrinking (antialiasing, unlike MONAI's ``Resized``, which blurs with a
    Gaussian first and then samples a sharper bicubic kernel), and every pass rounds and clips to 0..255, so bicubic
    overshoot never leaves the 8-bit range. Values are rounded and clipped to 0..255 first: meant for 8-bit images
    and for class-index masks (``"nearest"``). The affine is updated like MONAI's resize; the step is not
    invertible (``Invertd`` skips it).

    Args:
        keys: keys to resize.
        spatial_size: output ``(height, width)``.
        mode: Pillow filter per key: ``"nearest"``, ``"bilinear"``, ``"bicubic"``, ``"lanczos"``, ``"box"`` or
            ``"hamming"``.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        mode: str | Sequence[str] = "bicubic",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(spatial_size) != 2:
            raise ValueError(f"PILResized resizes 2D images: spatial_size must be (height, width), got {spatial_size}")
        self.spatial_size = tuple(int(s) for s in spatial_size)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        for name in self.mode:
            if name.upper() not in Image.Resampling.__members__:
                raise ValueError(f"unknown Pillow filter {name!r}")

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Resize each key to ``spatial_size``; the result is a float32 ``MetaTensor`` when the input is one."""
        d = dict(data)
        height, width = self.spatial_size
        for key, mode in self.key_iterator(d, self.mode):
            img = d[key]
            values = np.rint(to_numpy(img))  # one float copy, clipped in place, then 8 bits
            values = np.clip(values, 0, 255, out=values).astype(np.uint8)
            if values.ndim != 3:
                raise ValueError(f"PILResized expects (C, H, W) for {key!r}, got shape {values.shape}")
            resample = Image.Resampling[mode.upper()]
            resized = np.stack([np.asarray(Image.fromarray(c).resize((width, height), resample)) for c in values])
            out = torch.from_numpy(resized.astype(np.float32))
            if isinstance(img, MetaTensor):
                scale = to_affine_nd(len(img.affine) - 1, scale_affine(values.shape[1:], self.spatial_size))
                meta = {**img.meta, MetaKeys.AFFINE: img.affine @ scale}
                out = MetaTensor(out, meta=meta, applied_operations=img.applied_operations)
            d[key] = out
        return d


class ShrinkLongest(Resize):
    """Shrink a ``(C, H, W)`` image whose longest side exceeds ``max_size`` to that size (aspect kept); invertible.

    Large photos (6000x4000 dermoscopy, 3000x2000 endoscopy) are reduced to a working size of a few times the model
    input before the modality clean-ups, which would otherwise run on tens of millions of float pixels for a
    256x256 model input. Images no larger than ``max_size`` are left as they are (never enlarged). Shrinking uses
    ``mode`` (default ``"area"``: a box average, antialiased by construction and cheap, unlike a Gaussian blur of
    the full image first); the inverse (``Invertd``) resizes back to the original size with ``inverse_mode``
    (default ``"bilinear"``, smooth probabilities rather than the blocks that an inverse "area" would give).

    Args:
        max_size: the longest side after shrinking; ``None``: no limit (images keep their size, the native-size
            inference mode).
        mode: interpolation when shrinking (``"area"``; ``"nearest"`` for masks).
        inverse_mode: interpolation when inverting (``None``: the same as ``mode``).
    """

    def __init__(self, max_size: int | None, mode: str = "area", inverse_mode: str | None = "bilinear") -> None:
        if max_size is not None and int(max_size) < 1:
            raise ValueError(f"max_size must be a positive number of pixels, got {max_size}")
        size = -1 if max_size is None else int(max_size)
        super().__init__(spatial_size=(size, size), mode=mode, anti_aliasing=False)
        self.max_size = None if max_size is None else int(max_size)
        self.inverse_mode = inverse_mode

    def target_size(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The spatial size after shrinking an image of spatial ``shape``."""
        longest = max(int(s) for s in shape)
        if self.max_size is None or longest <= self.max_size:
            return tuple(int(s) for s in shape)
        return tuple(max(1, round(int(s) * self.max_size / longest)) for s in shape)

    def __call__(  # type: ignore[override]
        self,
        img: torch.Tensor,
        mode: str | None = None,
        align_corners: bool | None = None,
        dtype: torch.dtype | None = None,
        lazy: bool | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        """Shrink ``img``; ``mode``, ``align_corners``, ``dtype`` and ``lazy`` override the instance's for this call.

        The size is computed per call and handed to MONAI's functional ``resize`` (what ``Resize.__call__`` calls)
        rather than stored on the instance, so threads sharing one pipeline (a MONAI Label server) cannot mix sizes.
        """
        shape = img.peek_pending_shape() if isinstance(img, MetaTensor) else img.shape[1:]
        return resize(  # type: ignore[no-any-return]
            img,
            self.target_size(shape),
            self.mode if mode is None else mode,
            self.align_corners if align_corners is None else align_corners,
            get_equivalent_dtype(dtype or self.dtype or img.dtype, torch.Tensor),
            len(shape),
            False,
            None,
            self.lazy if lazy is None else lazy,
            self.get_transform_info(),
        )

    def inverse_transform(self, data: torch.Tensor, transform: dict) -> torch.Tensor:
        """Resize back to the recorded original size with ``inverse_mode``."""
        if self.inverse_mode is not None and transform[TraceKeys.EXTRA_INFO]["mode"] != "nearest":
            transform = {**transform, TraceKeys.EXTRA_INFO: {**transform[TraceKeys.EXTRA_INFO]}}
            transform[TraceKeys.EXTRA_INFO]["mode"] = self.inverse_mode
        return super().inverse_transform(data, transform)


class ShrinkLongestd(Resized):
    """Dictionary version of :class:`ShrinkLongest`: each key shrunk to at most ``max_size`` (masks ``"nearest"``).

    Args:
        keys: keys to shrink (image and label share their size, so they get the same size).
        max_size: the longest side after shrinking (``None``: no limit).
        mode: interpolation per key, e.g. ``("area", "nearest")`` for an image and its mask.
        inverse_mode: interpolation of the inverse for keys not shrunk with ``"nearest"``.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        max_size: int | None,
        mode: str | Sequence[str] = "area",
        inverse_mode: str | None = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        size = -1 if max_size is None else int(max_size)
        super().__init__(keys, spatial_size=(size, size), mode=mode, allow_missing_keys=allow_missing_keys)
        self.resizer = ShrinkLongest(max_size, inverse_mode=inverse_mode)
