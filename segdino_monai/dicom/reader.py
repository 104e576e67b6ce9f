"""Read DICOM images (and other medical image files) as channel-first RGB MONAI ``MetaTensor`` objects.

pydicom decodes the pixel data through its plugins (pylibjpeg, pillow, pyjpegls, RLE); where none of them can
decode a transfer syntax, ITK (GDCM) gets a try before the file is given up. Every image comes out as float32 RGB
on 0..255 in the file's row/column order: ``(3, H, W)`` for one frame, ``(3, F, H, W)`` for several (grey is
repeated to three channels, palette colour goes through its lookup table, YBR becomes RGB, MONOCHROME1 is
inverted, a VOI LUT or window is applied where present). The meta data keep what is needed to reference the
source (its UIDs and frame numbers), the physical pixel size in mm and the ultrasound image region, which
:class:`~segdino_monai.transforms.UltrasoundRegionCropd` crops and ``Invertd`` undoes.

Only pydicom (2.4 or 3) and ITK are imported at module level; pydicom-3-only functions are imported where used,
so that ``import segdino_monai.dicom`` works in the MONAI Label environment.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from segdino_monai.transforms.ultrasound import ULTRASOUND_REGION_KEY, ultrasound_region_from_dicom

__all__ = [
    "ITK_EXTENSIONS",
    "NON_IMAGE_SOP_CLASSES",
    "DicomReadError",
    "LoadDicomd",
    "check_image_dataset",
    "is_itk_file",
    "pixel_size_mm",
    "read_dicom",
    "read_image",
    "read_itk",
]

logger = logging.getLogger(__name__)

#: non-DICOM files read through ITK.
ITK_EXTENSIONS = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
#: SOP class UIDs (and sub-classes, UID + ".x") of objects without an image to segment, with a reason.
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66": "segmentation / registration / fiducials / surface (not an image)",
    "1.2.840.10008.5.1.4.1.1.88": "structured report (not an image)",
    "1.2.840.10008.5.1.4.1.1.11": "presentation state (not an image)",
    "1.2.840.10008.5.1.4.1.1.104": "encapsulated document (not an image)",
    "1.2.840.10008.5.1.4.1.1.481": "radiotherapy object (not a 2D image)",
    "1.2.840.10008.5.1.4.1.1.77.1.6": "whole-slide microscopy (tiled pyramid, not supported)",
    "1.2.840.10008.1.3.10": "DICOMDIR (media directory, not an image)",
}
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_CM_UNITS = 3  # PhysicalUnitsX/YDirection 3: cm


class DicomReadError(ValueError):
    """A file that cannot be read as an image; the message names the file and the reason."""


def _fail(path: str | Path, reason: str) -> DicomReadError:
    return DicomReadError(f"{path}: {' '.join(reason.split())}")  # one line: decoder messages span several


def _dcmread(path: Path) -> Any:
    """Read a DICOM file; files without a preamble/file meta are read with ``force=True`` when they parse."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(path))
    except InvalidDicomError:
        pass
    except Exception as err:  # truncated header, bad tags
        raise _fail(path, f"not a readable DICOM file ({type(err).__name__}: {err})") from err
    try:
        ds = pydicom.dcmread(str(path), force=True)
    except Exception as err:
        raise _fail(path, f"not a DICOM file ({type(err).__name__}: {err})") from err
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise _fail(path, "not a DICOM file (no DICM preamble and no DICOM image attributes)")
    _ensure_transfer_syntax(ds)
    logger.info("%s has no DICOM file meta header: read with force=True", path)
    return ds


def _ensure_transfer_syntax(ds: Any) -> None:
    """Set the file meta transfer syntax of a dataset read without file meta from how it was encoded."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        implicit, little = ds.is_implicit_VR, ds.is_little_endian
    meta.TransferSyntaxUID = (
        ImplicitVRLittleEndian if implicit else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    )


def check_image_dataset(ds: Any, path: str | Path) -> None:
    """Raise :class:`DicomReadError` unless ``ds`` is an image with pixel data (not SEG, SR, PR, ...)."""
    sop_class = str(ds.get("SOPClassUID", ""))
    for uid, what in NON_IMAGE_SOP_CLASSES.items():
        if sop_class == uid or sop_class.startswith(uid + "."):
            raise _fail(path, f"SOP class {sop_class}: {what}")
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        raise _fail(path, f"no pixel data (SOP class {sop_class or 'unknown'}, modality {ds.get('Modality', '?')})")
    if "Rows" not in ds or "Columns" not in ds:
        raise _fail(path, "pixel data without Rows/Columns")


def _frame_numbers(ds: Any, frames: Sequence[int] | int | None, path: str | Path) -> list[int]:
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if frames is None:
        return list(range(1, count + 1))
    chosen = [int(frames)] if isinstance(frames, (int, np.integer)) else [int(f) for f in frames]
    bad = [f for f in chosen if not 1 <= f <= count]
    if bad or not chosen:
        frames_text = "1 frame" if count == 1 else f"{count} frames"
        raise _fail(path, f"frame numbers {bad or chosen} outside 1..{count}: the file has {frames_text}")
    return chosen


def _check_pixel_data_length(ds: Any, path: str | Path) -> None:
    """Refuse native (uncompressed) pixel data shorter than Rows x Columns x SamplesPerPixel x frames x bytes says.

    pydicom refuses such data, but ITK (GDCM), the fallback decoder, pads it: without this check a damaged file
    would be segmented.
    """
    try:
        from pydicom.pixels.utils import get_expected_length
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import get_expected_length

    if "PixelData" not in ds or ds.file_meta.TransferSyntaxUID.is_compressed:
        return
    try:
        expected = int(get_expected_length(ds, unit="bytes"))
    except Exception as err:  # attributes the size is computed from are missing or invalid
        raise _fail(path, f"pixel data size cannot be computed from its attributes ({err})") from err
    stored = len(ds.PixelData or b"")
    if stored < expected:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        raise _fail(
            path,
            f"pixel data is {stored} bytes where Rows x Columns x SamplesPerPixel x frames x bytes "
            f"({ds.Rows} x {ds.Columns} x {ds.get('SamplesPerPixel', 1)} x {frames} x "
            f"{int(ds.get('BitsAllocated', 8)) / 8:g}) needs {expected}: the file is truncated or damaged",
        )


def _decode_pydicom(ds: Any, numbers: list[int], count: int) -> tuple[np.ndarray, str]:
    """Decode the chosen frames with pydicom, trying each available plugin; returns ``(F, H, W[, S])`` and its name."""
    from pydicom.pixels import get_decoder, pixel_array

    syntax = ds.file_meta.TransferSyntaxUID
    decoder = get_decoder(syntax)  # raises NotImplementedError for a transfer syntax pydicom does not know
    if not syntax.is_compressed:
        plugins = [""]
    else:
        plugins = list(decoder.available_plugins)
        if not plugins:
            missing = ", ".join(sorted(decoder.missing_dependencies)) or "a pixel-data plugin"
            raise RuntimeError(f"no pydicom decoder for {syntax.name}: install {missing}")
    errors = []
    for plugin in plugins:
        try:
            if len(numbers) == count:
                array = pixel_array(ds, decoding_plugin=plugin)
                array = array if count > 1 else array[None]
            else:
                array = np.stack([pixel_array(ds, index=n - 1, decoding_plugin=plugin) for n in numbers])
            return array, f"pydicom:{plugin or 'native'}"
        except Exception as err:
            errors.append(f"{plugin or 'native'}: {err}")
    raise RuntimeError("; ".join(errors))


def _decode_itk(path: str | Path, numbers: list[int], count: int, samples: int) -> np.ndarray:
    import itk

    array = np.asarray(itk.array_from_image(itk.imread(str(path))))
    if samples == 1 and array.ndim == 2 or samples > 1 and array.ndim == 3:
        array = array[None]
    if array.shape[0] != count:
        raise RuntimeError(f"ITK returned {array.shape[0]} frames where the file has {count}")
    return array[[n - 1 for n in numbers]]


def _grey_to_255(array: np.ndarray, ds: Any) -> np.ndarray:
    """Apply the modality and VOI LUT/window of a MONOCHROME image and bring it to 0..255 (MONOCHROME1 inverted)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    has_voi = "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds)
    has_modality = "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds
    values = array.astype(np.float64)
    if has_voi:
        values = np.asarray(apply_voi_lut(apply_modality_lut(array, ds) if has_modality else array, ds), np.float64)
        if "VOILUTSequence" in ds:
            low, high = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
        else:
            low, high = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
    elif bits <= 8 and not signed and not has_modality:
        low, high = 0.0, 2.0**bits - 1
    else:
        values = np.asarray(apply_modality_lut(array, ds), np.float64) if has_modality else values
        low, high = float(values.min()), float(values.max())
    out = np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0) * 255.0
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 255.0 - out
    return out


def _to_rgb_255(array: np.ndarray, ds: Any, samples: int, decoder: str) -> np.ndarray:
    """``(F, H, W[, S])`` decoded pixels to ``(F, H, W, 3)`` float RGB on 0..255."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if samples == 1 and photometric == "PALETTE COLOR" and decoder.startswith("pydicom"):
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(array, ds)
        # 16-bit LUT entries: the high byte is the 8-bit colour (0xFF00 is full scale, as GDCM does it)
        return np.floor(rgb / 256.0) if rgb.dtype.itemsize > 1 else rgb.astype(np.float64)
    if samples == 1:
        return np.repeat(_grey_to_255(array, ds)[..., None], 3, axis=-1)
    rgb = array[..., :3].astype(np.float64)
    bits = int(ds.get("BitsStored", 8))
    return rgb * (255.0 / (2.0**bits - 1)) if bits > 8 else rgb


def pixel_size_mm(ds: Any) -> tuple[list[float] | None, str | None]:
    """The physical size (row, column) in mm of a pixel and where it came from.

    In order: PixelSpacing, ImagerPixelSpacing, then the Sequence of Ultrasound Regions (PhysicalDeltaY/X of the
    largest 2D tissue region measured in cm).
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return [float(value[0]), float(value[1])], keyword
    regions = [
        r
        for r in ds.get("SequenceOfUltrasoundRegions", None) or []
        if r.get("PhysicalUnitsXDirection") == _CM_UNITS
        and r.get("PhysicalUnitsYDirection") == _CM_UNITS
        and float(r.get("PhysicalDeltaX", 0) or 0) > 0
        and float(r.get("PhysicalDeltaY", 0) or 0) > 0
    ]
    if not regions:
        return None, None
    tissue = [r for r in regions if r.get("RegionSpatialFormat") == 1] or regions

    def area(r: Any) -> int:
        return (int(r.RegionLocationMaxX1) - int(r.RegionLocationMinX0)) * (
            int(r.RegionLocationMaxY1) - int(r.RegionLocationMinY0)
        )

    region = max(tissue, key=area)
    return [float(region.PhysicalDeltaY) * 10.0, float(region.PhysicalDeltaX) * 10.0], "SequenceOfUltrasoundRegions"


def _affine(spacing: Sequence[float] | None) -> torch.Tensor:
    affine = torch.eye(4, dtype=torch.float64)
    if spacing is not None:
        affine[0, 0], affine[1, 1] = float(spacing[0]), float(spacing[1])
    return affine


def read_dicom(path: str | Path, frames: Sequence[int] | int | None = None, use_itk: bool = True) -> MetaTensor:
    """Read a DICOM image as float32 RGB on 0..255, ``(3, H, W)`` for one frame or ``(3, F, H, W)`` for several.

    Args:
        path: the DICOM file (with or without file meta header).
        frames: DICOM frame numbers (from 1) to read; an int reads that one frame as ``(3, H, W)``; ``None`` all.
        use_itk: try ITK (GDCM) when no pydicom plugin decodes the pixel data.

    Returns:
        The image with meta data: the source UIDs (``StudyInstanceUID``, ``SeriesInstanceUID``,
        ``SOPInstanceUID``, ``SOPClassUID``), ``Modality``, ``frame_numbers``, ``number_of_frames``,
        ``original_size`` (rows, columns), ``pixel_size_mm`` (row, column; ``None`` when unknown) and its source,
        ``ultrasound_region`` (when the file has regions), ``photometric_interpretation``, ``decoder`` and
        ``filename_or_obj``.

    Raises:
        DicomReadError: naming the file and the reason (not DICOM, not an image, truncated, pixel data shorter than
            its attributes say, frame numbers outside the file's frames, no decoder, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    ds = _dcmread(path)
    check_image_dataset(ds, path)
    _ensure_transfer_syntax(ds)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    numbers = _frame_numbers(ds, frames, path)
    _check_pixel_data_length(ds, path)
    samples = int(ds.get("SamplesPerPixel", 1))
    try:
        array, decoder = _decode_pydicom(ds, numbers, count)
    except Exception as err:
        reason = f"pydicom cannot decode {ds.file_meta.TransferSyntaxUID.name} ({err})"
        if not use_itk:
            raise _fail(path, reason) from err
        logger.info("%s: %s; trying ITK (GDCM)", path, reason)
        try:
            array, decoder = _decode_itk(path, numbers, count, samples), "itk:gdcm"
        except Exception as itk_err:
            raise _fail(path, f"{reason}; ITK (GDCM) failed too ({itk_err})") from itk_err
    rows, cols = int(ds.Rows), int(ds.Columns)
    if tuple(array.shape[1:3]) != (rows, cols):
        raise _fail(path, f"decoded frames are {array.shape[1:3]} where Rows x Columns is {rows} x {cols}")
    rgb = _to_rgb_255(array, ds, samples, decoder)  # (F, H, W, 3)
    image = np.moveaxis(rgb.astype(np.float32), -1, 0)  # (3, F, H, W)
    if isinstance(frames, (int, np.integer)) or (frames is None and count == 1):
        image = image[:, 0]
    spacing, spacing_source = pixel_size_mm(ds)
    meta: dict[str, Any] = {
        "filename_or_obj": str(path),
        "StudyInstanceUID": str(ds.get("StudyInstanceUID", "")),
        "SeriesInstanceUID": str(ds.get("SeriesInstanceUID", "")),
        "SOPInstanceUID": str(ds.get("SOPInstanceUID", "")),
        "SOPClassUID": str(ds.get("SOPClassUID", "")),
        "Modality": str(ds.get("Modality", "")),
        "FrameOfReferenceUID": str(ds.get("FrameOfReferenceUID", "")),
        "frame_numbers": numbers,
        "number_of_frames": count,
        "original_size": [rows, cols],
        "spatial_shape": np.array([rows, cols]),
        "original_channel_dim": 0,
        "samples_per_pixel": samples,
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "pixel_size_mm": spacing,
        "pixel_size_source": spacing_source,
        "decoder": decoder,
    }
    region = ultrasound_region_from_dicom(ds)
    if region is not None:
        meta[ULTRASOUND_REGION_KEY] = region
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(image)), affine=_affine(spacing), meta=meta)


def read_itk(path: str | Path) -> MetaTensor:
    """Read a 2D (or 2D+channels) NIfTI, MHA/MHD or NRRD file through ITK as ``(3, H, W)`` float32 on 0..255.

    Grey images are scaled from their minimum and maximum (8-bit images are kept as they are) and repeated to three
    channels. ``pixel_size_mm`` comes from the ITK spacing (row, column).
    """
    import itk

    path = Path(path)
    try:
        image = itk.imread(str(path))
    except Exception as err:
        raise _fail(path, f"ITK cannot read it ({err})") from err
    array = np.asarray(itk.array_from_image(image))
    components = int(image.GetNumberOfComponentsPerPixel())
    spatial = array.shape[:-1] if components > 1 else array.shape
    if len(spatial) == 3 and spatial[0] == 1:
        array, spatial = array[0], spatial[1:]
    if len(spatial) != 2:
        raise _fail(path, f"not a 2D image (ITK size {tuple(spatial)})")
    spacing_xy = [float(s) for s in image.GetSpacing()][:2]
    values = array.astype(np.float64)
    if array.dtype != np.uint8:
        low, high = float(values.min()), float(values.max())
        values = (values - low) / max(high - low, 1e-12) * 255.0
    rgb = values[..., :3] if components > 1 else np.repeat(values[..., None], 3, axis=-1)
    if rgb.shape[-1] != 3:
        rgb = np.repeat(rgb[..., :1], 3, axis=-1)
    out = np.moveaxis(rgb.astype(np.float32), -1, 0)
    spacing = [spacing_xy[1], spacing_xy[0]]
    meta = {
        "filename_or_obj": str(path),
        "frame_numbers": [1],
        "number_of_frames": 1,
        "original_size": [int(out.shape[1]), int(out.shape[2])],
        "spatial_shape": np.array(out.shape[1:]),
        "original_channel_dim": 0,
        "samples_per_pixel": components,
        "pixel_size_mm": spacing,
        "pixel_size_source": "itk spacing",
        "decoder": "itk",
    }
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(out)), affine=_affine(spacing), meta=meta)


def is_itk_file(path: str | Path) -> bool:
    """Whether a file is read through ITK rather than as DICOM (by its extension)."""
    return str(path).lower().endswith(ITK_EXTENSIONS)


def read_image(path: str | Path, frames: Sequence[int] | int | None = None) -> MetaTensor:
    """Read a DICOM file (:func:`read_dicom`) or a NIfTI/MHA/MHD/NRRD file (:func:`read_itk`)."""
    if is_itk_file(path):
        if frames not in (None, 1, [1]):
            raise _fail(path, "frame selection applies to DICOM files only")
        return read_itk(path)
    return read_dicom(path, frames)


class LoadDicomd(MapTransform):
    """Load DICOM (or NIfTI/MHA/NRRD) files named in ``keys`` with :func:`read_image`.

    Use it in place of ``LoadImaged`` + ``EnsureRGBd`` at the start of a preset's pipeline: the output is already
    channel-first RGB ``(3, H, W)`` on 0..255 (``(3, F, H, W)`` for several frames).

    Args:
        keys: keys holding file paths.
        frames: DICOM frame numbers (from 1) to read; an int for one frame; ``None`` for all.
        allow_missing_keys: do not raise when a key is absent.
    """

    def __init__(
        self, keys: KeysCollection, frames: Sequence[int] | int | None = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.frames = frames

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Replace each path by its image."""
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = read_image(d[key], self.frames)
        return d
