"""Building blocks shared by the modality transforms: channel handling, normalisation, content crops, inpainting.

All arrays are channel-first ``(C, H, W)`` in the file's row/column order. Intensity thresholds given as fractions
are fractions of full scale: 1 for images already on 0..1, 255 otherwise (what ``LoadImaged`` gives for 8-bit files).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import (
    CropForeground,
    CropForegroundd,
    MapTransform,
    NormalizeIntensityd,
    Resize,
    Resized,
    Transform,
)
from monai.transforms.spatial.functional import resize
from monai.transforms.utils import scale_affine
from monai.utils import (
    MetaKeys,
    TraceKeys,
    convert_to_dst_type,
    convert_to_tensor,
    ensure_tuple_rep,
    get_equivalent_dtype,
)
from PIL import Image
from scipy import ndimage
from skimage.restoration import inpaint_biharmonic

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PATCH_SIZE",
    "BoxCrop",
    "BoxCropd",
    "DetectedBoxCrop",
    "DetectedBoxCropd",
    "block_mean",
    "box_to_full",
    "upsample_nearest",
    "EnsureRGB",
    "EnsureRGBd",
    "PILResized",
    "ShrinkLongest",
    "ShrinkLongestd",
    "as_float32_like",
    "full_scale",
    "imagenet_normalize",
    "inpaint",
    "luminance",
    "shrink_to_clean_border",
]

#: DINOv3 (ImageNet) statistics for images on 0..1.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: the ViT patch size: network inputs must be multiples of it.
PATCH_SIZE = 16

BoxFn = Callable[[NdarrayOrTensor], tuple[Sequence[int], Sequence[int]]]


def to_numpy(img: NdarrayOrTensor) -> np.ndarray:
    """A float32 numpy array of an array or tensor (MetaTensor meta is dropped), for reading.

    It shares the input's memory when the input is already float32 on the CPU (a 24-megapixel RGB image is 288 MB
    per float copy), so callers never write into it; they make their own output.
    """
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu()
        img = img.as_tensor() if isinstance(img, MetaTensor) else img
        return np.asarray(img.numpy(), dtype=np.float32)
    return np.asarray(img, dtype=np.float32)


def as_float32_like(out: np.ndarray, img: NdarrayOrTensor) -> NdarrayOrTensor:
    """``out`` as float32 of the kind of ``img``: a numpy array, or a tensor (a ``MetaTensor`` keeps its meta data)."""
    dtype = torch.float32 if isinstance(img, torch.Tensor) else np.float32
    return convert_to_dst_type(out, img, dtype=dtype)[0]


def full_scale(img: np.ndarray) -> float:
    """1.0 for an image on 0..1, else 255.0 (8-bit values)."""
    return 1.0 if float(img.max(initial=0.0)) <= 1.0 else 255.0


def luminance(img: np.ndarray) -> np.ndarray:
    """``(H, W)`` luminance on 0..1 of a ``(C, H, W)`` image (Rec. 601 weights for RGB, the mean otherwise)."""
    scale = np.float32(full_scale(img))  # applied to the (H, W) result: no scaled copy of the whole image
    if img.shape[0] == 3:
        return np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), img, axes=1) / scale
    return img.mean(axis=0, dtype=np.float32) / scale


def shrink_to_clean_border(
    dark: np.ndarray, max_dark_fraction: float, max_shrink: float
) -> tuple[list[int], list[int]]:
    """Shrink the full box side by side until no border row/column is darker than ``max_dark_fraction``.

    The side whose border line holds the largest fraction of dark pixels moves inwards first; no side moves by
    more than ``max_shrink`` of the image size, so a mostly dark image is never cropped to nothing.

    Args:
        dark: ``(H, W)`` boolean mask of dark (non-content) pixels.
        max_dark_fraction: largest fraction of dark pixels allowed on a border line of the box.
        max_shrink: largest fraction of the height (width) that the top, bottom (left, right) side may move.

    Returns:
        ``(start, end)`` of the box in (row, column) order, ``end`` exclusive.
    """
    height, width = dark.shape
    row_cum = np.concatenate([np.zeros((height, 1)), np.cumsum(dark, axis=1)], axis=1)  # dark counts per row prefix
    col_cum = np.concatenate([np.zeros((1, width)), np.cumsum(dark, axis=0)], axis=0)
    top, bottom, left, right = 0, height, 0, width
    limit_rows, limit_cols = int(max_shrink * height), int(max_shrink * width)
    while bottom - top > 2 and right - left > 2:
        span_w, span_h = right - left, bottom - top
        fractions = {
            "top": (row_cum[top, right] - row_cum[top, left]) / span_w if top < limit_rows else -1.0,
            "bottom": (row_cum[bottom - 1, right] - row_cum[bottom - 1, left]) / span_w
            if height - bottom < limit_rows
            else -1.0,
            "left": (col_cum[bottom, left] - col_cum[top, left]) / span_h if left < limit_cols else -1.0,
            "right": (col_cum[bottom, right - 1] - col_cum[top, right - 1]) / span_h
            if width - right < limit_cols
            else -1.0,
        }
        side = max(fractions, key=fractions.__getitem__)
        if fractions[side] <= max_dark_fraction:
            break
        top, bottom = top + (side == "top"), bottom - (side == "bottom")
        left, right = left + (side == "left"), right - (side == "right")
    return [top, left], [bottom, right]


def block_mean(img: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of the last two axes (a remainder at the far edges is dropped)."""
    if factor <= 1:
        return img
    height, width = img.shape[-2] // factor * factor, img.shape[-1] // factor * factor
    # Sums over bands of ``factor`` rows, one band at a time (float64 per band only), then over block columns: no
    # full-size copy. skimage's downscale_local_mean pads (copies) the whole image, and a float64 reduceat casts it
    # whole: 288 MB and 576 MB for a 24-megapixel RGB float32 image.
    rows = np.empty((*img.shape[:-2], height // factor, width), dtype=np.float64)
    for band in range(height // factor):
        rows[..., band, :] = img[..., band * factor : (band + 1) * factor, :width].sum(axis=-2, dtype=np.float64)
    return np.add.reduceat(rows, np.arange(0, width, factor), axis=-1) / float(factor * factor)


def box_to_full(
    start: Sequence[int], end: Sequence[int], small_shape: Sequence[int], shape: Sequence[int], factor: int
) -> tuple[list[int], list[int]]:
    """Scale a box found on a :func:`block_mean` copy back to the full image.

    A box that reaches the copy's far edge reaches the image's far edge (the dropped remainder is kept).
    """
    full_start = [int(s) * factor for s in start]
    full_end = [
        size if int(e) >= small else min(size, int(e) * factor)
        for e, small, size in zip(end, small_shape, shape, strict=True)
    ]
    return full_start, full_end


def upsample_nearest(small: np.ndarray, shape: Sequence[int], factor: int) -> np.ndarray:
    """Undo :func:`block_mean` on a 2D array by repeating each value (edge remainder takes the last value)."""
    if factor <= 1:
        return small
    rows = np.minimum(np.arange(shape[0]) // factor, small.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]) // factor, small.shape[1] - 1)
    return small[np.ix_(rows, cols)]


def inpaint(img: np.ndarray, mask: np.ndarray, max_size: int = 128, dilate: int = 1) -> np.ndarray:
    """Fill the masked pixels of a ``(C, H, W)`` image by biharmonic inpainting at reduced resolution.

    ``skimage.restoration.inpaint_biharmonic`` solves a sparse system per masked region and takes seconds on a
    full-size photo; the filled-in values are smooth by construction, so solving on a block-averaged copy whose
    longest side is about ``max_size`` and interpolating back only at the masked pixels loses nothing visible and
    never touches the rest of the image.

    Args:
        img: ``(C, H, W)`` image.
        mask: ``(H, W)`` boolean mask of pixels to fill.
        max_size: longest side of the working copy.
        dilate: pixels by which the mask grows first (covers the halo around bright or dark structures).

    Returns:
        The inpainted image (float32, same shape).
    """
    if dilate > 0:
        mask = ndimage.binary_dilation(mask, iterations=dilate)
    out = img.astype(np.float32, copy=True)
    if not mask.any():
        return out
    factor = max(1, int(np.ceil(max(mask.shape) / max_size)))
    small_mask = block_mean(mask, factor) > 0  # block sums of the boolean mask: no float copy of it
    if small_mask.all():
        return out
    small = block_mean(out, factor)
    filled = inpaint_biharmonic(np.moveaxis(small, 0, -1), small_mask, channel_axis=-1)
    rows, cols = np.nonzero(mask)
    coords = np.stack([(rows + 0.5) / factor - 0.5, (cols + 0.5) / factor - 0.5])
    for channel in range(out.shape[0]):
        out[channel, rows, cols] = ndimage.map_coordinates(filled[..., channel], coords, order=1, mode="nearest")
    return out


def imagenet_normalize(keys: KeysCollection = "image") -> NormalizeIntensityd:
    """DINOv3 (ImageNet) mean/std normalisation of 0..1 RGB images, per channel.

    Args:
        keys: image keys.

    Returns:
        A configured ``NormalizeIntensityd``.
    """
    return NormalizeIntensityd(keys, subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True)


class EnsureRGB(Transform):
    """Make any ``(C, H, W)`` image three-channel: grey is repeated, alpha (RGBA, LA) is dropped.

    DINOv3 was trained on RGB photos and needs three channels; ultrasound and many grey files have one.
    """

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return the three-channel image.

        Args:
            img: ``(C, H, W)`` image with 1 to 4 channels.

        Returns:
            ``(3, H, W)`` image of the same type.
        """
        channels = img.shape[0]
        if channels in (1, 2):
            return img[:1].repeat(3, 1, 1) if isinstance(img, torch.Tensor) else np.repeat(img[:1], 3, axis=0)
        if channels in (3, 4):
            return img[:3]
        raise ValueError(f"EnsureRGB expects 1 to 4 channels (C, H, W), got shape {tuple(img.shape)}")


class EnsureRGBd(MapTransform):
    """Dictionary version of :class:`EnsureRGB`.

    Args:
        keys: image keys.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = EnsureRGB()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Apply :class:`EnsureRGB` to each key."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d


class _BoxSelect:
    """A ``select_fn`` for MONAI's foreground crops: True inside the box that ``box_fn`` finds (picklable)."""

    def __init__(self, box_fn: BoxFn) -> None:
        self.box_fn = box_fn

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        start, end = self.box_fn(img)
        selected = torch.zeros((1, *img.shape[1:]), dtype=torch.bool)
        selected[(0, *(slice(int(s), int(e)) for s, e in zip(start, end, strict=True)))] = True
        return selected


class BoxCrop(CropForeground):
    """Crop to a box computed from the image by ``box_fn``, through MONAI's (invertible) ``CropForeground``.

    Subclasses only supply ``box_fn``; MONAI records the crop, so ``Invertd`` pads predictions back to the
    original size.

    Args:
        box_fn: maps a ``(C, H, W)`` image (a ``MetaTensor`` when loaded by MONAI) to ``(start, end)``.
    """

    def __init__(self, box_fn: BoxFn) -> None:
        super().__init__(select_fn=_BoxSelect(box_fn), allow_smaller=True)

    def __call__(self, img: NdarrayOrTensor, **kwargs: object) -> torch.Tensor:  # type: ignore[override]
        """Crop ``img`` to its box (``kwargs`` go to ``CropForeground``)."""
        return super().__call__(convert_to_tensor(img, track_meta=True), **kwargs)  # type: ignore[arg-type]


class BoxCropd(CropForegroundd):
    """Dictionary version of :class:`BoxCrop`: the box comes from ``source_key`` and crops every key alike.

    Args:
        keys: keys to crop (image and label).
        box_fn: maps the ``source_key`` image to ``(start, end)``.
        source_key: the key the box is computed from.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, box_fn: BoxFn, source_key: str = "image", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(
            keys,
            source_key=source_key,
            select_fn=_BoxSelect(box_fn),
            allow_smaller=True,
            start_coord_key=None,
            end_coord_key=None,
            allow_missing_keys=allow_missing_keys,
        )


class DetectedBoxCrop(BoxCrop):
    """Crop to the box that the subclass's detector (``box_class``) finds in the image; invertible.

    A modality's crop is then only its detector: ``EndoscopyBorderCrop(work_size=512)`` passes its arguments to
    ``EndoscopyContentBox``, whose signature holds the defaults (written once, there).

    Args:
        box_args: the detector's arguments (see the subclass's ``box_class``).
    """

    box_class: Callable[..., BoxFn]

    def __init__(self, **box_args: Any) -> None:
        super().__init__(self.box_class(**box_args))

    @property
    def box_fn(self) -> BoxFn:
        """The detector, with its settings (``crop.box_fn.work_size``)."""
        return self.select_fn.box_fn  # type: ignore[no-any-return]


class DetectedBoxCropd(BoxCropd):
    """Dictionary version of :class:`DetectedBoxCrop`: the box found in ``source_key`` crops every key alike.

    Args:
        keys: keys to crop (image and label).
        source_key: the image the box is found in.
        allow_missing_keys: do not raise when a key is absent.
        box_args: the detector's arguments (see the subclass's ``box_class``).
    """

    box_class: Callable[..., BoxFn]

    def __init__(
        self, keys: KeysCollection, source_key: str = "image", allow_missing_keys: bool = False, **box_args: Any
    ) -> None:
        super().__init__(keys, self.box_class(**box_args), source_key, allow_missing_keys)

    @property
    def box_fn(self) -> BoxFn:
        """The detector, with its settings (``crop.box_fn.work_size``)."""
        return self.cropper.select_fn.box_fn  # type: ignore[no-any-return]


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
