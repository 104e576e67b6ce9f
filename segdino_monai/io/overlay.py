"""Colour overlays of class-index masks on their images: one drawing rule for every output and figure.

The overlay PNGs of the bundle's inference (:class:`~segdino_monai.transforms.SaveSegmentationd`), of ``segdino
dicom`` (:mod:`segdino_monai.dicom.seg`) and the report's case panels (:mod:`segdino_monai.reporting.figures`)
all call :func:`overlay`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["PALETTE", "overlay"]

#: Overlay colours of classes 1, 2, ... (class 0, the background, is not drawn); cycled past the sixth class.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 255, 0),
    (255, 0, 0),
    (0, 128, 255),
    (255, 200, 0),
    (255, 0, 255),
    (0, 255, 255),
)
_BAND = 256  # rows blended at a time


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    alpha: float = 0.45,
    colours: Sequence[Sequence[int]] = PALETTE,
) -> np.ndarray:
    """The ``(H, W, 3)`` RGB image with each class of ``mask`` blended in its colour; background pixels unchanged.

    Class ``k`` (``k >= 1``) gets ``colours[(k - 1) % len(colours)]``: the colour is the class's, whichever classes
    the mask holds. Blended pixels are ``round((1 - alpha) * pixel + alpha * colour)``.

    ``skimage.color.label2rgb`` is not used: it gives colours by rank among the labels present (a mask holding only
    class 2 would get class 1's colour), and it converts the whole image to float64 HSV and back (about 2 GB of
    temporaries for a 24-megapixel photo). Here the blend runs a band of rows at a time, only where the mask is.

    Args:
        image: ``(H, W, 3)`` RGB on 0..255 (``uint8``, or floats, which are rounded and clipped to 0..255).
        mask: ``(H, W)`` class indices (0 background).
        alpha: opacity of the class colours.
        colours: RGB colour of class 1, 2, ... (cycled).

    Returns:
        A new ``(H, W, 3)`` ``uint8`` array.

    Raises:
        ValueError: when ``image`` is not ``(H, W, 3)`` at the size of ``mask``.
    """
    source = np.asarray(image)
    mask = np.asarray(mask)
    if source.ndim != 3 or source.shape[2] != 3:
        raise ValueError(f"overlay needs an (H, W, 3) RGB image, got shape {source.shape}")
    if source.shape[:2] != mask.shape:
        raise ValueError(f"image size {source.shape[:2]} differs from its mask {mask.shape}")
    if source.dtype == np.uint8:
        out = source.copy()
    else:
        out = np.clip(np.rint(source), 0, 255).astype(np.uint8)
    for index in range(1, int(mask.max(initial=0)) + 1):
        colour = np.asarray(colours[(index - 1) % len(colours)], dtype=np.float32)
        for top in range(0, mask.shape[0], _BAND):
            region = mask[top : top + _BAND] == index
            if not region.any():
                continue
            blended = (1 - alpha) * source[top : top + _BAND][region].astype(np.float32) + alpha * colour
            out[top : top + _BAND][region] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
