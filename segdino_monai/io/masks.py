"""Robust reading of 2D segmentation masks into class-index maps, as a MONAI array + dictionary transform pair.

Public 2D datasets store masks in many ways: JPEG masks with compression noise (Kvasir-SEG, CVC), 0/255 or 0/1
greyscale PNGs, palette and 1-bit PNGs (HAM10000), RGB class colours (BUSI re-releases), and several masks per
image (BUSI lesions). :class:`LoadMask` turns all of them into the same thing: a ``MetaTensor`` of shape
``(1, H, W)`` and dtype ``uint8`` holding class indices, in the file's row/column order (the same order as
``LoadImaged(reader=SegDINOImageReader, ensure_channel_first=True)`` gives the image). Files are decoded by
:func:`segdino_monai.io.images.open_image`, like images: TIFF masks (CVC-ClinicDB's, three samples tagged
MINISBLACK included) through tifffile, with the same decompression-bomb limit.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from PIL import Image

from segdino_monai.io.images import open_image
from segdino_monai.utils.errors import InputError

__all__ = ["DEFAULT_CLASS_COLORS", "LoadMask", "LoadMaskd", "segment_areas"]

logger = logging.getLogger(__name__)

#: BUSI-style RGB class colours: green benign, red malignant. Black is always background.
DEFAULT_CLASS_COLORS: dict[tuple[int, int, int], int] = {(0, 255, 0): 1, (255, 0, 0): 2}

#: binary masks: foreground is strictly above this grey level (128 and up; JPEG masks are noisy around 0 and 255).
MASK_THRESHOLD = 127
MaskMode = Literal["binary", "index", "color"]
MergeRule = Literal["max", "first"]


class LoadMask(Transform):
    """Read one mask file, or several masks of one image, into a ``(1, H, W)`` ``uint8`` class-index ``MetaTensor``.

    Modes:

    - ``"binary"`` (default): a pixel is foreground (1) when any channel is above ``threshold`` (on 0..255;
      scaled for 16-bit files). Lossless integer files whose values are only 0 and 1 are read as 0/1 masks.
      Palette and 1-bit PNGs are read through their colours, so a mask gives the same result whatever its format;
      JPEG noise and anti-aliasing are removed by the threshold.
    - ``"index"``: the stored value (grey level or palette index) is the class index (e.g. 0/1/2 masks).
    - ``"color"``: RGB class colours are mapped to indices through ``class_colors``; each pixel takes the nearest
      colour (black is background) if it is within ``color_tolerance`` (Euclidean, 0..255), else background, so
      JPEG colour noise still maps to the right class.

    Several paths (a list) are merged: the union for binary masks; for class indices the maximum index
    (``merge="max"``, the more severe class wins where lesions overlap) or the first non-zero one in list order
    (``merge="first"``).

    An empty mask (no foreground after thresholding, a normal case: an image without lesion) is allowed: it is
    flagged with ``meta["empty"] = True`` and logged at debug level. The first file name is kept in
    ``meta["filename_or_obj"]`` and all of them in ``meta["mask_files"]``.

    Args:
        mode: ``"binary"``, ``"index"`` or ``"color"``; ``None`` means ``"color"`` when ``class_colors`` is given,
            else ``"binary"``.
        threshold: binary threshold on the 0..255 scale (foreground is strictly above it).
        class_colors: the RGB colours of the classes for ``"color"`` mode: a list whose order gives the class index
            (``[[0, 255, 0], [255, 0, 0]]``: green is 1, red is 2; what a JSON config can hold), or a mapping of
            colours to indices; default BUSI's ``[[0, 255, 0], [255, 0, 0]]``.
        color_tolerance: largest Euclidean RGB distance from a class colour that still counts as that colour.
        merge: how class-index masks of one image are merged, ``"max"`` or ``"first"``.
    """

    def __init__(
        self,
        mode: MaskMode | None = None,
        threshold: float = MASK_THRESHOLD,
        class_colors: Sequence[Sequence[int]] | Mapping[Sequence[int], int] | None = None,
        color_tolerance: float = 80.0,
        merge: MergeRule = "max",
    ) -> None:
        if class_colors is not None and not isinstance(class_colors, Mapping):
            class_colors = {tuple(color): index for index, color in enumerate(class_colors, start=1)}
        if mode is None:
            mode = "color" if class_colors is not None else "binary"
        if mode not in ("binary", "index", "color"):
            raise InputError(f"mode must be 'binary', 'index' or 'color', got {mode!r}")
        if merge not in ("max", "first"):
            raise InputError(f"merge must be 'max' or 'first', got {merge!r}")
        if not 0 <= threshold < 255:
            raise InputError(f"threshold must be in [0, 255), got {threshold}")
        colors = DEFAULT_CLASS_COLORS if class_colors is None else class_colors
        for color, index in colors.items():
            if not isinstance(color, Sequence) or len(tuple(color)) != 3 or not 0 < int(index) < 256:
                raise InputError(f"class_colors needs RGB triples mapped to indices 1..255, got {color!r}: {index!r}")
        self.mode: MaskMode = mode
        self.threshold = float(threshold)
        self.class_colors = {tuple(int(c) for c in color): int(index) for color, index in colors.items()}
        self.color_tolerance = float(color_tolerance)
        self.merge: MergeRule = merge

    def __call__(self, filename: str | Path | Sequence[str | Path]) -> MetaTensor:
        """Read and merge the mask file(s).

        Args:
            filename: one path, or a list of paths of masks of the same image.

        Returns:
            A ``(1, H, W)`` ``uint8`` ``MetaTensor`` of class indices.
        """
        paths = [Path(filename)] if isinstance(filename, (str, Path)) else [Path(f) for f in filename]
        if not paths:
            raise InputError("LoadMask needs at least one mask path, got an empty list")
        merged: np.ndarray | None = None
        for path in paths:
            mask = self._read_one(path)
            if merged is None:
                merged = mask
            elif mask.shape != merged.shape:
                raise InputError(f"mask {path} has shape {mask.shape} but {paths[0]} has {merged.shape}")
            elif self.mode == "binary" or self.merge == "max":
                merged = np.maximum(merged, mask)
            else:
                merged = np.where(merged > 0, merged, mask)
        assert merged is not None
        empty = not merged.any()
        if empty:
            logger.debug("empty mask (no foreground): %s", ", ".join(map(str, paths)))
        meta = {
            "filename_or_obj": str(paths[0]),
            "mask_files": [str(p) for p in paths],
            "spatial_shape": np.asarray(merged.shape),
            "original_channel_dim": float("nan"),
            "empty": empty,
        }
        return MetaTensor(torch.from_numpy(np.ascontiguousarray(merged[None])), meta=meta)

    def _read_one(self, path: Path) -> np.ndarray:
        """Read one file into an ``(H, W)`` ``uint8`` class-index array."""
        if not path.is_file():
            raise FileNotFoundError(f"mask file not found: {path}")
        with open_image(path) as image:  # InputError naming the file when it cannot be read
            return self._to_indices(image, path)

    def _to_indices(self, image: Image.Image, path: Path) -> np.ndarray:
        lossy = image.format == "JPEG"
        if self.mode == "index":
            values = np.asarray(image.convert("L") if image.mode in ("RGB", "RGBA", "LA") else image)
            if values.ndim != 2 or values.max(initial=0) > 255:
                raise InputError(f"index mask {path} must be one channel with values 0..255, got mode {image.mode}")
            return values.astype(np.uint8)
        if self.mode == "color":
            return self._colors_to_indices(np.asarray(image.convert("RGB")), path)
        # binary: read the colours (palette / 1-bit through their colours), drop alpha
        if image.mode == "P":
            image = image.convert("RGBA")
        elif image.mode == "1":
            image = image.convert("L")
        values = np.asarray(image)
        if values.ndim == 3:
            values = values[..., : 3 if values.shape[-1] >= 3 else 1].max(axis=-1)
        if not lossy and np.issubdtype(values.dtype, np.integer) and values.max(initial=0) <= 1:
            return (values > 0).astype(np.uint8)
        if np.issubdtype(values.dtype, np.floating) and values.max(initial=0) <= 1.0:
            scale = 1.0 / 255.0  # floating-point masks on 0..1
        elif values.dtype == np.uint16 or values.max(initial=0) > 255:
            scale = 257.0  # 16-bit masks on 0..65535
        else:
            scale = 1.0
        return (values > self.threshold * scale).astype(np.uint8)

    def _colors_to_indices(self, rgb: np.ndarray, path: Path) -> np.ndarray:
        # match each distinct colour once (masks hold few colours, even with JPEG noise), then map the pixels
        packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
        colors, inverse = np.unique(packed.ravel(), return_inverse=True)
        unique_rgb = np.stack([(colors >> 16) & 255, (colors >> 8) & 255, colors & 255], axis=-1).astype(np.float32)
        palette = np.array([(0, 0, 0), *self.class_colors], dtype=np.float32)
        indices = np.array([0, *self.class_colors.values()], dtype=np.uint8)
        distances = np.linalg.norm(unique_rgb[:, None, :] - palette[None], axis=-1)
        nearest = distances.argmin(axis=-1)
        unmatched = distances[np.arange(len(colors)), nearest] > self.color_tolerance
        if unmatched.any():
            logger.debug("%d colours of %s match no class colour; set to background", int(unmatched.sum()), path)
        lut = np.where(unmatched, 0, indices[nearest]).astype(np.uint8)
        return lut[inverse].reshape(packed.shape)


class LoadMaskd(MapTransform):
    """Dictionary version of :class:`LoadMask`: replaces the path (or list of paths) under each key by the mask.

    Args:
        keys: keys of the mask paths (usually ``"label"``).
        allow_missing_keys: do not raise when a key is absent.
        kwargs: passed to :class:`LoadMask` (``mode``, ``threshold``, ``class_colors``, ``color_tolerance``,
            ``merge``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        mode: MaskMode | None = None,
        threshold: float = MASK_THRESHOLD,
        class_colors: Sequence[Sequence[int]] | Mapping[Sequence[int], int] | None = None,
        color_tolerance: float = 80.0,
        merge: MergeRule = "max",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMask(mode, threshold, class_colors, color_tolerance, merge)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """Load the masks named under ``keys``.

        Args:
            data: a datalist entry such as ``{"image": path, "label": path_or_paths}``.

        Returns:
            A copy of ``data`` with masks in place of the paths.
        """
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])  # type: ignore[arg-type]
        return d


def segment_areas(
    mask: np.ndarray, labels: Sequence[str], pixel_size_mm: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Area of each segment (class 1, 2, ...) of an ``(H, W)`` mask: pixels, and mm2 when the pixel size is known."""
    pixel_area = float(pixel_size_mm[0]) * float(pixel_size_mm[1]) if pixel_size_mm else None
    out = []
    for number, label in enumerate(labels, start=1):
        pixels = int(np.count_nonzero(np.asarray(mask) == number))
        out.append(
            {
                "segment_number": number,
                "label": label,
                "area_pixels": pixels,
                "area_mm2": None if pixel_area is None else round(pixels * pixel_area, 4),
            }
        )
    return out
