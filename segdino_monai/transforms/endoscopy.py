"""Endoscopy transforms: crop of the black frame and corners, and specular-highlight removal.

Colonoscopy frames show the round or octagonal view of the scope inside a black frame, often with burnt-in text and
a blacked-out overview box in a corner (Kvasir-SEG). The frame carries no tissue, so it is cropped. The wet mucosa
reflects the scope's light as small saturated white spots; they hide texture and look like lesion borders, so
they are found (very bright, nearly colourless pixels) and filled in from their surroundings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import Transform
from monai.transforms.utils import get_largest_connected_component_mask
from scipy import ndimage

from segdino_monai.transforms.crop import DetectedBoxCrop, DetectedBoxCropd
from segdino_monai.transforms.utility import EachKeyd
from segdino_monai.transforms.utils import (
    as_float32_like,
    box_to_full,
    full_scale,
    inpaint,
    shrink_to_clean_border,
    to_numpy,
    work_luminance,
)

__all__ = [
    "EndoscopyBorderCrop",
    "EndoscopyBorderCropd",
    "EndoscopyContentBox",
    "SpecularHighlightRemoval",
    "SpecularHighlightRemovald",
    "specular_highlight_mask",
]


class EndoscopyContentBox:
    """Find the scope's view in an endoscopy frame: the box without black frame and (mostly) black corners.

    On a copy at most ``work_size`` pixels wide: pixels darker than ``dark_threshold`` (luminance, 0..1) are frame;
    the bounding box of the largest non-dark region removes the frame, then sides move inwards while a border
    line is more than ``max_dark_fraction`` dark (octagon corners, corner boxes), by at most ``max_shrink``.

    Args:
        dark_threshold: luminance (0..1) at or below which a pixel is frame.
        max_dark_fraction: largest dark fraction allowed on a border line of the box.
        max_shrink: largest fraction of a side's length that the shrinking may remove from that side.
        work_size: longest side of the detection copy.
    """

    def __init__(
        self,
        dark_threshold: float = 0.08,
        max_dark_fraction: float = 0.5,
        max_shrink: float = 0.2,
        work_size: int = 256,
    ) -> None:
        self.dark_threshold = dark_threshold
        self.max_dark_fraction = max_dark_fraction
        self.max_shrink = max_shrink
        self.work_size = work_size

    def __call__(self, img: NdarrayOrTensor) -> tuple[Sequence[int], Sequence[int]]:
        """Return ``(start, end)`` (row, column; exclusive end) of the view."""
        array = to_numpy(img)
        height, width = array.shape[1:]
        lum, factor = work_luminance(array, self.work_size)
        dark = lum <= self.dark_threshold
        # the largest 8-connected (full connectivity) non-dark region
        view = get_largest_connected_component_mask(ndimage.binary_opening(~dark, iterations=2))
        if not view.any():
            return [0, 0], [height, width]
        rows, cols = np.nonzero(view)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        (dr0, dc0), (dr1, dc1) = shrink_to_clean_border(dark[r0:r1, c0:c1], self.max_dark_fraction, self.max_shrink)
        return box_to_full([r0 + dr0, c0 + dc0], [r0 + dr1, c0 + dc1], dark.shape, (height, width), factor)


class EndoscopyBorderCrop(DetectedBoxCrop):
    """Crop an endoscopy frame to the scope's view (see :class:`EndoscopyContentBox`); invertible.

    Args:
        box_args: :class:`EndoscopyContentBox`'s ``dark_threshold``, ``max_dark_fraction``, ``max_shrink`` and
            ``work_size``.
    """

    box_class = EndoscopyContentBox


class EndoscopyBorderCropd(DetectedBoxCropd):
    """Dictionary version of :class:`EndoscopyBorderCrop`: the view of ``source_key`` crops all ``keys``.

    Args:
        keys: keys to crop (image and label).
        source_key: the image the view is found in.
        allow_missing_keys: do not raise when a key is absent.
        box_args: :class:`EndoscopyContentBox`'s ``dark_threshold``, ``max_dark_fraction``, ``max_shrink`` and
            ``work_size``.
    """

    box_class = EndoscopyContentBox


def specular_highlight_mask(
    img: NdarrayOrTensor, value_threshold: float = 0.9, saturation_threshold: float = 0.25
) -> np.ndarray:
    """Specular highlights of an RGB ``(3, H, W)`` image: very bright (HSV value) and nearly colourless pixels.

    Args:
        img: ``(3, H, W)`` image on 0..1 or 0..255.
        value_threshold: HSV value (max channel, 0..1) above which a pixel is bright.
        saturation_threshold: HSV saturation below which a pixel is colourless.

    Returns:
        ``(H, W)`` boolean mask.
    """
    array = to_numpy(img)
    scale = np.float32(full_scale(array))
    value = array.max(axis=0) / scale  # (H, W) planes only: no scaled copy of the whole image
    saturation = (value - array.min(axis=0) / scale) / np.maximum(value, 1e-6)
    return (value > value_threshold) & (saturation < saturation_threshold)


class SpecularHighlightRemoval(Transform):
    """Fill specular highlights (see :func:`specular_highlight_mask`) from their surroundings.

    The mask is dilated by ``dilate`` pixels to cover the glare halo, then filled by biharmonic inpainting on a
    copy at most ``max_size`` pixels wide (full-size biharmonic inpainting takes seconds per frame; highlights are
    small and the fill is smooth, so reduced resolution is enough). Only highlight pixels change.

    Args:
        value_threshold: see :func:`specular_highlight_mask`.
        saturation_threshold: see :func:`specular_highlight_mask`.
        dilate: pixels by which the mask grows.
        max_size: longest side of the inpainting copy.
    """

    def __init__(
        self, value_threshold: float = 0.9, saturation_threshold: float = 0.25, dilate: int = 2, max_size: int = 128
    ) -> None:
        self.value_threshold = value_threshold
        self.saturation_threshold = saturation_threshold
        self.dilate = dilate
        self.max_size = max_size

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Inpaint the highlights of a ``(3, H, W)`` image."""
        mask = specular_highlight_mask(img, self.value_threshold, self.saturation_threshold)
        out = inpaint(to_numpy(img), mask, max_size=self.max_size, dilate=self.dilate)
        return as_float32_like(out, img)


class SpecularHighlightRemovald(EachKeyd):
    """Dictionary version of :class:`SpecularHighlightRemoval`.

    Args:
        keys: image keys.
        value_threshold: see :func:`specular_highlight_mask`.
        saturation_threshold: see :func:`specular_highlight_mask`.
        dilate: pixels by which the mask grows.
        max_size: longest side of the inpainting copy.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        value_threshold: float = 0.9,
        saturation_threshold: float = 0.25,
        dilate: int = 2,
        max_size: int = 128,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = SpecularHighlightRemoval(value_threshold, saturation_threshold, dilate, max_size)
