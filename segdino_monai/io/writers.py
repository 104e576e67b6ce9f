"""The mask files of a segmentation, one encoding each: the PNG mask, the colour overlay PNG and NIfTI.

``segdino dicom`` (:mod:`segdino_monai.dicom.seg`) and the bundle's writer
(:class:`~segdino_monai.transforms.SaveSegmentationd`) both write through these, so the same mask gives the same
files on every path. Each ``write_*`` function is its encoder plus :func:`~segdino_monai.utils.atomic.atomic_write`; the
encoders are public for writers that prepare every file of a sample before writing the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segdino_monai.io.overlay import overlay
from segdino_monai.utils.atomic import atomic_write

__all__ = ["mask_png", "nifti_image", "write_nifti", "write_overlay", "write_png_mask"]


def mask_png(mask: np.ndarray) -> Image.Image:
    """An ``(H, W)`` class-index mask as an 8-bit image: 0/255 when binary (classes 0 and 1), else the indices."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a PNG mask needs an (H, W) class-index mask, got shape {mask.shape}")
    png = (mask > 0).astype(np.uint8) * 255 if mask.max(initial=0) <= 1 else mask.astype(np.uint8)
    return Image.fromarray(png)


def nifti_image(mask: np.ndarray, pixel_size_mm: Sequence[float] | None = None) -> Any:
    """An ``(H, W)`` or ``(F, H, W)`` mask as a ``nibabel.Nifti1Image``: x = column, y = row, z = frame.

    The axes are those of MONAI reading a PNG (x along a row). The affine holds the pixel size: column spacing on
    x, row spacing on y, in mm (1 where unknown); units are set to mm.

    Args:
        mask: class indices, ``(H, W)`` or ``(F, H, W)``.
        pixel_size_mm: ``(row spacing, column spacing)``, as DICOM's PixelSpacing; ``None`` when unknown.
    """
    import nibabel as nib

    mask = np.asarray(mask, dtype=np.uint8)
    if mask.ndim not in (2, 3):
        raise ValueError(f"a NIfTI mask needs an (H, W) or (F, H, W) mask, got shape {mask.shape}")
    data = mask.T if mask.ndim == 2 else np.transpose(mask, (2, 1, 0))
    rows_mm, cols_mm = (float(pixel_size_mm[0]), float(pixel_size_mm[1])) if pixel_size_mm else (1.0, 1.0)
    image = nib.Nifti1Image(np.ascontiguousarray(data), np.diag([cols_mm, rows_mm, 1.0, 1.0]))
    image.header.set_xyzt_units(xyz="mm")
    return image


def write_png_mask(mask: np.ndarray, path: str | Path) -> Path:
    """Write :func:`mask_png` of ``mask`` to ``path``, atomically."""
    png = mask_png(mask)
    return atomic_write(path, lambda tmp: png.save(tmp, format="PNG"))


def write_overlay(image: np.ndarray, mask: np.ndarray, path: str | Path, alpha: float = 0.45) -> Path:
    """Write the ``(H, W, 3)`` image with the classes of ``mask`` blended in colour (:func:`overlay`) as PNG."""
    picture = Image.fromarray(overlay(image, mask, alpha))
    return atomic_write(path, lambda tmp: picture.save(tmp, format="PNG"))


def write_nifti(mask: np.ndarray, path: str | Path, pixel_size_mm: Sequence[float] | None = None) -> Path:
    """Write :func:`nifti_image` of ``mask`` (with its pixel size) to ``path``, atomically."""
    import nibabel as nib

    image = nifti_image(mask, pixel_size_mm)
    return atomic_write(path, lambda tmp: nib.save(image, tmp))
