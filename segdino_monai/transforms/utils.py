"""Array helpers shared by the modality transforms: numpy views, full scale, luminance, border shrinking, inpainting.

All arrays are channel-first ``(C, H, W)`` in the file's row/column order. Intensity thresholds given as fractions
are fractions of full scale: 1 for images already on 0..1, 255 otherwise (what ``LoadImaged`` gives for 8-bit files).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config.type_definitions import NdarrayOrTensor
from monai.data import MetaTensor
from monai.utils import (
    convert_to_dst_type,
)
from scipy import ndimage
from skimage.restoration import inpaint_biharmonic

__all__ = [
    "LUMA_WEIGHTS",
    "block_mean",
    "box_to_full",
    "upsample_nearest",
    "as_float32_like",
    "full_scale",
    "inpaint",
    "luminance",
    "shrink_to_clean_border",
    "work_factor",
    "work_luminance",
]

#: Rec. 601 luma weights of R, G and B.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


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
        return np.tensordot(LUMA_WEIGHTS, img, axes=1) / scale
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


def work_factor(shape: Sequence[int], work_size: int) -> int:
    """The :func:`block_mean` factor that brings the longest side of ``shape`` to at most ``work_size``."""
    return max(1, int(np.ceil(max(shape) / work_size)))


def work_luminance(img: np.ndarray, work_size: int) -> tuple[np.ndarray, int]:
    """The :func:`luminance` of a ``(C, H, W)`` image on a copy at most ``work_size`` wide, and its factor.

    The detection copy of the border crops, ultrasound regions and hair: :func:`box_to_full` and
    :func:`upsample_nearest` take what is found on it back to the image with the factor.
    """
    factor = work_factor(img.shape[-2:], work_size)
    return block_mean(luminance(img), factor), factor


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
    factor = work_factor(mask.shape, max_size)
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
