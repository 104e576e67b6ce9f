"""Dermoscopy transforms: hair removal and crop of the dark vignette.

Body hair crosses many dermoscopy photos as thin dark curves; they cut lesions in two and look like lesion border
structures, so they are found (a morphological black-hat picks thin dark structures) and inpainted (as in
DullRazor, Lee et al. 1997). Contact dermatoscopes image through a round lens, leaving dark circular corners that
carry no skin and darken colour statistics; they are cropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import Transform
from skimage.morphology import black_tophat, disk, remove_small_objects

from segdino_monai.transforms.crop import DetectedBoxCrop, DetectedBoxCropd
from segdino_monai.transforms.utility import EachKeyd
from segdino_monai.transforms.utils import (
    as_float32_like,
    box_to_full,
    inpaint,
    shrink_to_clean_border,
    to_numpy,
    upsample_nearest,
    work_luminance,
)

__all__ = [
    "DermoscopyVignetteBox",
    "DermoscopyVignetteCrop",
    "DermoscopyVignetteCropd",
    "HairRemoval",
    "HairRemovald",
    "hair_mask",
]


def hair_mask(
    img: NdarrayOrTensor, radius: int = 5, threshold: float = 0.06, min_size: int = 40, work_size: int = 512
) -> np.ndarray:
    """Thin dark structures (hair) of a ``(C, H, W)`` dermoscopy image.

    On a copy at most ``work_size`` pixels wide: the black-hat (closing minus image) of the luminance with a disk
    of ``radius`` responds to dark structures narrower than the disk; it is thresholded and small blobs (pigment
    dots, noise) under ``min_size`` pixels are dropped, keeping long connected hairs.

    Args:
        img: ``(C, H, W)`` image on 0..1 or 0..255.
        radius: disk radius (working pixels); structures up to about twice as wide are found.
        threshold: black-hat response (luminance, 0..1) above which a pixel is hair.
        min_size: smallest connected hair (working pixels).
        work_size: longest side of the detection copy.

    Returns:
        ``(H, W)`` boolean mask at the image's size.
    """
    array = to_numpy(img)
    lum, factor = work_luminance(array, work_size)
    found = remove_small_objects(black_tophat(lum, disk(radius)) > threshold, max_size=min_size - 1)
    return upsample_nearest(found, array.shape[1:], factor)


class HairRemoval(Transform):
    """Remove hair from a ``(C, H, W)`` dermoscopy image: :func:`hair_mask`, then biharmonic inpainting.

    The inpainting runs on a copy at most ``max_size`` pixels wide (full-size biharmonic inpainting of many long
    hairs takes tens of seconds); only hair pixels change.

    Args:
        radius: see :func:`hair_mask`.
        threshold: see :func:`hair_mask`.
        min_size: see :func:`hair_mask`.
        dilate: pixels by which the hair mask grows before inpainting.
        max_size: longest side of the inpainting copy.
    """

    def __init__(
        self, radius: int = 5, threshold: float = 0.06, min_size: int = 40, dilate: int = 1, max_size: int = 256
    ) -> None:
        self.radius = radius
        self.threshold = threshold
        self.min_size = min_size
        self.dilate = dilate
        self.max_size = max_size

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return the image without hair."""
        mask = hair_mask(img, self.radius, self.threshold, self.min_size)
        out = inpaint(to_numpy(img), mask, max_size=self.max_size, dilate=self.dilate)
        return as_float32_like(out, img)


class HairRemovald(EachKeyd):
    """Dictionary version of :class:`HairRemoval`.

    Args:
        keys: image keys.
        radius: see :func:`hair_mask`.
        threshold: see :func:`hair_mask`.
        min_size: see :func:`hair_mask`.
        dilate: pixels by which the hair mask grows.
        max_size: longest side of the inpainting copy.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        radius: int = 5,
        threshold: float = 0.06,
        min_size: int = 40,
        dilate: int = 1,
        max_size: int = 256,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = HairRemoval(radius, threshold, min_size, dilate, max_size)


class DermoscopyVignetteBox:
    """Find the box inside the dark round vignette of a dermoscopy photo.

    On a copy at most ``work_size`` pixels wide, pixels darker than ``dark_threshold`` (luminance, 0..1) are
    vignette; sides move inwards while a border line is more than ``max_dark_fraction`` dark, by at most
    ``max_shrink`` of the side. Photos without vignette keep their full size.

    Args:
        dark_threshold: luminance (0..1) below which a pixel is vignette.
        max_dark_fraction: largest dark fraction allowed on a border line of the box.
        max_shrink: largest fraction of a side's length the crop may remove from that side.
        work_size: longest side of the detection copy.
    """

    def __init__(
        self,
        dark_threshold: float = 0.15,
        max_dark_fraction: float = 0.1,
        max_shrink: float = 0.2,
        work_size: int = 256,
    ) -> None:
        self.dark_threshold = dark_threshold
        self.max_dark_fraction = max_dark_fraction
        self.max_shrink = max_shrink
        self.work_size = work_size

    def __call__(self, img: NdarrayOrTensor) -> tuple[Sequence[int], Sequence[int]]:
        """Return ``(start, end)`` (row, column; exclusive end) inside the vignette."""
        array = to_numpy(img)
        height, width = array.shape[1:]
        lum, factor = work_luminance(array, self.work_size)
        dark = lum < self.dark_threshold
        start, end = shrink_to_clean_border(dark, self.max_dark_fraction, self.max_shrink)
        return box_to_full(start, end, dark.shape, (height, width), factor)


class DermoscopyVignetteCrop(DetectedBoxCrop):
    """Crop the dark vignette of a dermoscopy photo (see :class:`DermoscopyVignetteBox`); invertible.

    Args:
        box_args: :class:`DermoscopyVignetteBox`'s ``dark_threshold``, ``max_dark_fraction``, ``max_shrink`` and
            ``work_size``.
    """

    box_class = DermoscopyVignetteBox


class DermoscopyVignetteCropd(DetectedBoxCropd):
    """Dictionary version of :class:`DermoscopyVignetteCrop`: the box of ``source_key`` crops all ``keys``.

    Args:
        keys: keys to crop (image and label).
        source_key: the image the box is found in.
        allow_missing_keys: do not raise when a key is absent.
        box_args: :class:`DermoscopyVignetteBox`'s ``dark_threshold``, ``max_dark_fraction``, ``max_shrink`` and
            ``work_size``.
    """

    box_class = DermoscopyVignetteBox
