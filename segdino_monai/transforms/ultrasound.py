"""Ultrasound transforms: image-region crop, speckle noise and contrast-limited histogram equalisation.

Scanner exports carry much more than the image: burnt-in patient and scanner text, colour bars, rulers, and a dark
frame. A network fed whole screenshots learns those, so the image region is cropped first. Ultrasound's own noise
is multiplicative speckle and its brightness depends on the operator's gain and dynamic range, so augmentation
imitates those rather than additive Gaussian noise.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import numpy as np
from monai.config import KeysCollection
from monai.config.type_definitions import NdarrayOrTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform
from scipy import ndimage
from skimage.exposure import equalize_adapthist
from skimage.morphology import disk

from segdino_monai.io.dicom_reader import is_dicom_file, ultrasound_region_from_dicom
from segdino_monai.io.ultrasound_regions import ULTRASOUND_REGION_KEY
from segdino_monai.transforms.crop import BoxCrop, BoxCropd
from segdino_monai.transforms.utility import EachKeyd
from segdino_monai.transforms.utils import (
    as_float32_like,
    box_to_full,
    full_scale,
    to_numpy,
    work_luminance,
)

__all__ = [
    "ULTRASOUND_REGION_KEY",
    "CLAHE",
    "CLAHEd",
    "RandSpeckleNoise",
    "RandSpeckleNoised",
    "UltrasoundRegionBox",
    "UltrasoundRegionCrop",
    "UltrasoundRegionCropd",
    "ultrasound_region_from_dicom",
]

logger = logging.getLogger(__name__)


class UltrasoundRegionBox:
    """Find the ultrasound image region of a ``(C, H, W)`` image.

    In order: ``meta["ultrasound_region"]`` (set by the package's DICOM reader); the image region of the Sequence of
    Ultrasound Regions of the DICOM file named in ``meta["filename_or_obj"]`` (a DICOM file read by another reader),
    chosen by the rule of :mod:`segdino_monai.io.ultrasound_regions`; else detection: on a copy at most ``work_size``
    pixels wide, pixels brighter than ``dark_threshold`` (fraction of full scale), opened with a disk of ``text_radius``
    to remove thin text, rulers and markers, and the bounding box of the largest connected region.

    Args:
        dark_threshold: luminance (0..1) above which a pixel can be image.
        text_radius: radius (working pixels) of the opening that removes text-like thin bright structures.
        work_size: longest side of the detection copy.
    """

    def __init__(self, dark_threshold: float = 0.03, text_radius: int = 2, work_size: int = 320) -> None:
        self.dark_threshold = dark_threshold
        self.text_radius = text_radius
        self.work_size = work_size

    def __call__(self, img: NdarrayOrTensor) -> tuple[Sequence[int], Sequence[int]]:
        """Return ``(start, end)`` (row, column; exclusive end) of the image region."""
        height, width = img.shape[1:]
        meta = getattr(img, "meta", {}) or {}
        if meta.get(ULTRASOUND_REGION_KEY) is not None:
            start, end = meta[ULTRASOUND_REGION_KEY]
            return [int(s) for s in start], [int(e) for e in end]
        filename = meta.get("filename_or_obj")
        if isinstance(filename, (str, Path)) and is_dicom_file(filename):
            region = ultrasound_region_from_dicom(filename)
            if region is not None:
                return region
        return self.detect(to_numpy(img))

    def detect(self, img: np.ndarray) -> tuple[list[int], list[int]]:
        """Detect the region from pixels alone (dark frame and text margins removed)."""
        height, width = img.shape[1:]
        lum, factor = work_luminance(img, self.work_size)
        content = ndimage.binary_opening(lum > self.dark_threshold, structure=disk(self.text_radius))
        boxes = self._image_like_boxes(content)
        if not boxes:
            logger.debug("no ultrasound region found; keeping the whole image")
            return [0, 0], [height, width]
        start = [min(b[0] for b in boxes), min(b[1] for b in boxes)]
        end = [max(b[2] for b in boxes), max(b[3] for b in boxes)]
        return box_to_full(start, end, lum.shape, (height, width), factor)

    @staticmethod
    def _image_like_boxes(content: np.ndarray, min_side: float = 0.1, max_aspect: float = 5.0) -> list[tuple]:
        """Boxes of the connected regions that look like image panes, not banners or colour bars.

        A pane is at least ``min_side`` of the image in both directions, no more than ``max_aspect`` times longer
        than wide, and at least a fifth of the largest pane's area (so dual-pane layouts keep both panes).
        """
        labels, count = ndimage.label(content, structure=np.ones((3, 3), dtype=bool))
        height, width = content.shape
        panes = []
        for index, found in enumerate(ndimage.find_objects(labels), start=1):
            if found is None:
                continue
            rows, cols = found[0].stop - found[0].start, found[1].stop - found[1].start
            if rows < min_side * height or cols < min_side * width or max(rows, cols) > max_aspect * min(rows, cols):
                continue
            area = int((labels[found] == index).sum())
            panes.append((area, (found[0].start, found[1].start, found[0].stop, found[1].stop)))
        if not panes:
            return []
        largest = max(area for area, _ in panes)
        return [box for area, box in panes if area >= 0.2 * largest]


class UltrasoundRegionCrop(BoxCrop):
    """Crop an ultrasound frame to its image region (see :class:`UltrasoundRegionBox`); invertible.

    Args:
        dark_threshold: see :class:`UltrasoundRegionBox`.
        text_radius: see :class:`UltrasoundRegionBox`.
    """

    def __init__(self, dark_threshold: float = 0.03, text_radius: int = 2) -> None:
        super().__init__(UltrasoundRegionBox(dark_threshold, text_radius))


class UltrasoundRegionCropd(BoxCropd):
    """Dictionary version of :class:`UltrasoundRegionCrop`: the region of ``source_key`` crops all ``keys``.

    Args:
        keys: keys to crop (image and label).
        source_key: the image the region is found in.
        dark_threshold: see :class:`UltrasoundRegionBox`.
        text_radius: see :class:`UltrasoundRegionBox`.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str = "image",
        dark_threshold: float = 0.03,
        text_radius: int = 2,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, UltrasoundRegionBox(dark_threshold, text_radius), source_key, allow_missing_keys)


class RandSpeckleNoise(RandomizableTransform):
    """Multiply the image by ``1 + sigma * n``, with ``n`` spatially correlated unit Gaussian noise (speckle).

    Speckle is the interference pattern of coherent ultrasound echoes; it is multiplicative (bright tissue is
    noisier) and has a grain of a few pixels, so the noise is smoothed by a Gaussian of ``correlation`` pixels.
    The same noise field is used for every channel. Output is clipped below at 0.

    Args:
        prob: probability of applying the noise.
        std_range: range of ``sigma``, drawn uniformly.
        correlation: Gaussian smoothing (pixels) of the noise field; 0 for white noise.
    """

    def __init__(
        self, prob: float = 0.5, std_range: tuple[float, float] = (0.05, 0.2), correlation: float = 1.0
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.std_range = std_range
        self.correlation = correlation
        self._noise: np.ndarray | None = None

    def randomize(self, shape: Sequence[int]) -> None:  # type: ignore[override]
        """Draw whether to apply, ``sigma`` and the noise field for an ``(H, W)`` image."""
        super().randomize(None)
        if not self._do_transform:
            return
        sigma = self.R.uniform(*self.std_range)
        noise = self.R.standard_normal(tuple(shape)).astype(np.float32)
        if self.correlation > 0:
            noise = ndimage.gaussian_filter(noise, self.correlation)
            noise /= max(float(noise.std()), 1e-6)
        self._noise = 1.0 + sigma * noise

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        """Apply speckle to a ``(C, H, W)`` image."""
        if randomize:
            self.randomize(img.shape[1:])
        if not self._do_transform or self._noise is None:
            return img
        out = np.clip(to_numpy(img) * self._noise[None], 0.0, None)
        return as_float32_like(out, img)


class RandSpeckleNoised(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandSpeckleNoise`: one draw shared by all keys (image keys only).

    Args:
        keys: image keys.
        prob: probability of applying the noise.
        std_range: range of ``sigma``.
        correlation: Gaussian smoothing (pixels) of the noise field.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.5,
        std_range: tuple[float, float] = (0.05, 0.2),
        correlation: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.speckle = RandSpeckleNoise(1.0, std_range, correlation)

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandSpeckleNoised:
        """Seed this transform and its array transform."""
        super().set_random_state(seed, state)
        self.speckle.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        """Apply the same speckle draw to every key."""
        d = dict(data)
        self.randomize(None)
        first = next(iter(self.key_iterator(d)), None)
        if not self._do_transform or first is None:
            return d
        self.speckle.randomize(d[first].shape[1:])
        for key in self.key_iterator(d):
            d[key] = self.speckle(d[key], randomize=False)
        return d


class CLAHE(Transform):
    """Contrast-limited adaptive histogram equalisation (``skimage.exposure.equalize_adapthist``).

    Ultrasound contrast varies with depth (attenuation) and with the operator's gain and time-gain compensation;
    CLAHE evens it out locally so that lesion borders look alike across scanners. Works on the image's full scale
    (0..1 or 0..255) and returns the same scale; a grey image with repeated channels is equalised once.

    Args:
        clip_limit: contrast limit, as in scikit-image (higher is stronger).
        kernel_size: tile size in pixels; ``None`` is 1/8 of each side.
    """

    def __init__(self, clip_limit: float = 0.01, kernel_size: int | None = None) -> None:
        self.clip_limit = clip_limit
        self.kernel_size = kernel_size

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Equalise a ``(C, H, W)`` image."""
        array = to_numpy(img)
        scale = full_scale(array)
        scaled = np.clip(array / scale, 0.0, 1.0)
        grey = all(np.array_equal(scaled[0], channel) for channel in scaled[1:])
        channels = scaled[:1] if grey else scaled
        equalised = np.stack(
            [equalize_adapthist(c, kernel_size=self.kernel_size, clip_limit=self.clip_limit) for c in channels]
        )
        if grey:
            equalised = np.repeat(equalised, scaled.shape[0], axis=0)
        out = (equalised * scale).astype(np.float32)
        return as_float32_like(out, img)


class CLAHEd(EachKeyd):
    """Dictionary version of :class:`CLAHE`.

    Args:
        keys: image keys.
        clip_limit: contrast limit.
        kernel_size: tile size in pixels.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        clip_limit: float = 0.01,
        kernel_size: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = CLAHE(clip_limit, kernel_size)
