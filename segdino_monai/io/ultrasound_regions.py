"""The Sequence of Ultrasound Regions of a DICOM image: where the ultrasound image is, and its pixel size.

An ultrasound DICOM is usually a screenshot of the scanner's display: the image, burnt-in text, a grey or colour
bar, and sometimes an M-mode trace, a Doppler spectrum or an ECG strip. The Sequence of Ultrasound Regions
(PS3.3 C.8.5.5) lists the parts, each with its box (``RegionLocationMinX0`` ... ``RegionLocationMaxY1``,
inclusive), its kind (``RegionSpatialFormat``: 1 a 2D image (tissue or colour flow), 2 M-mode, 3 spectral Doppler,
4 a waveform such as an ECG, 5 graphics) and its physical scale (``PhysicalDeltaX``/``Y`` in the units of
``PhysicalUnitsX``/``YDirection``, 3 being cm).

**The rule**, used by every path that reads the sequence (:class:`~segdino_monai.io.dicom_reader.DicomReader`, hence
``LoadImaged`` in the bundle configs and ``segdino dicom``, and
:class:`~segdino_monai.transforms.UltrasoundRegionBox` for a DICOM file read by another reader):

1. Each region is clipped to the image (``Rows`` x ``Columns``: some files declare regions larger than their pixel
   data); a region with nothing inside the image is passed over.
2. The image region is the **largest 2D region** (``RegionSpatialFormat`` 1) by clipped area; in a file without a 2D
   region, the largest region of any kind. On a tie, the first one in the sequence.
3. Its pixel size is that same region's ``PhysicalDeltaY``/``X`` (row, column) converted to mm, when both
   directions are in cm and positive; otherwise the region gives no pixel size. (The reader prefers
   ``PixelSpacing``/``ImagerPixelSpacing`` when the file has them, see
   :func:`~segdino_monai.io.dicom_reader.pixel_size_mm`.)

Why one region and not the union of the 2D regions: the crop must keep the image the network was trained on (one
B-mode image) and the pixel size must be the one of the pixels kept.

- B-mode with an M-mode trace, a Doppler spectrum or an ECG strip (formats 2 to 4, e.g. ``OBXXXX1A.dcm``): those are
  not 2D regions; the B-mode image is kept either way.
- Colour flow: its 2D region lies inside the B-mode region, which is the larger; the union would be the same box.
- A colour bar, a zoom box or a small strip that a scanner tags as a 2D region: the union would stretch the crop to
  take it in, with the burnt-in text between; the largest region does not.
- Two images side by side (dual display, e.g. ``gdcm-US-ALOKA-16.dcm``): the union hands the network two images
  squeezed into one input, far from what it was trained on, and a lesion seen in both would be measured twice; the
  largest region keeps one image (the first, as both are the same size) at its own aspect, and the other image is
  left unsegmented (zero in the mask). Detection from pixels, used when a file has no regions, keeps both panes of
  such a layout (:meth:`~segdino_monai.transforms.UltrasoundRegionBox.detect`); it has no scale to be wrong about.

Only pydicom datasets are read here (pydicom 2.4 or 3); nothing is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ULTRASOUND_REGION_KEY", "UltrasoundRegion", "ultrasound_region"]

#: meta key of a known image region, ``((row0, col0), (row1, col1))`` with exclusive ends.
ULTRASOUND_REGION_KEY = "ultrasound_region"
_2D_FORMAT = 1  # RegionSpatialFormat 1: 2D tissue or flow image
_CM_UNITS = 3  # PhysicalUnitsX/YDirection 3: cm


@dataclass(frozen=True)
class UltrasoundRegion:
    """The image region of an ultrasound frame, chosen by the module's rule.

    Attributes:
        start: first (row, column) inside the region.
        end: (row, column) past the region (exclusive), clipped to the image.
        pixel_size_mm: (row, column) size of a pixel in mm from the region's physical deltas; ``None`` when the
            region is not calibrated in cm.
        spatial_format: the region's ``RegionSpatialFormat`` (1 for a 2D image).
    """

    start: tuple[int, int]
    end: tuple[int, int]
    pixel_size_mm: tuple[float, float] | None
    spatial_format: int

    @property
    def box(self) -> tuple[list[int], list[int]]:
        """``(start, end)`` as lists, the form of ``meta["ultrasound_region"]``."""
        return list(self.start), list(self.end)


def _clipped(region: Any, rows: int, cols: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    try:
        start = (max(0, int(region.RegionLocationMinY0)), max(0, int(region.RegionLocationMinX0)))
        end = (min(rows, int(region.RegionLocationMaxY1) + 1), min(cols, int(region.RegionLocationMaxX1) + 1))
    except (AttributeError, TypeError, ValueError):  # a region without (or with unreadable) location attributes
        return None
    return (start, end) if end[0] > start[0] and end[1] > start[1] else None


def _pixel_size(region: Any) -> tuple[float, float] | None:
    units = (region.get("PhysicalUnitsYDirection"), region.get("PhysicalUnitsXDirection"))
    try:
        delta = (float(region.get("PhysicalDeltaY", 0) or 0), float(region.get("PhysicalDeltaX", 0) or 0))
    except (TypeError, ValueError):
        return None
    if units != (_CM_UNITS, _CM_UNITS) or min(delta) <= 0:
        return None
    return delta[0] * 10.0, delta[1] * 10.0


def ultrasound_region(ds: Any) -> UltrasoundRegion | None:
    """The image region of an ultrasound dataset by the module's rule, or ``None`` when it declares none.

    Args:
        ds: a pydicom ``Dataset`` (pixel data not needed).
    """
    regions = ds.get("SequenceOfUltrasoundRegions", None) or []
    rows, cols = int(ds.get("Rows", 1 << 16) or 1 << 16), int(ds.get("Columns", 1 << 16) or 1 << 16)
    found = [(box, region) for region in regions if (box := _clipped(region, rows, cols)) is not None]
    if not found:
        return None
    two_d = [item for item in found if item[1].get("RegionSpatialFormat") == _2D_FORMAT] or found

    def area(item: tuple) -> int:
        (r0, c0), (r1, c1) = item[0]
        return (r1 - r0) * (c1 - c0)

    (start, end), region = max(two_d, key=area)  # max keeps the first of equal areas
    return UltrasoundRegion(start, end, _pixel_size(region), int(region.get("RegionSpatialFormat", 0) or 0))
