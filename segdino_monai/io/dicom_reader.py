"""Read DICOM images (and 2D NIfTI/MHA/NRRD files) as channel-first RGB: the decoder and its MONAI ``ImageReader``.

pydicom decodes the pixel data through its plugins (pylibjpeg, pillow, pyjpegls, RLE); where none of them can decode a
transfer syntax, ITK (GDCM) gets a try before the file is given up. Every image comes out as float32 RGB on 0..255 in
the file's row/column order: ``(3, H, W)`` for one frame, ``(3, F, H, W)`` for several (grey is repeated to three
channels, palette colour goes through its lookup table, YBR becomes RGB, MONOCHROME1 is inverted, a VOI LUT or window is
applied where present). The meta data keep what is needed to reference the source (its UIDs and frame numbers), the
physical pixel size in mm and the ultrasound image region (chosen by the rule of
:mod:`segdino_monai.io.ultrasound_regions`), which :class:`~segdino_monai.transforms.UltrasoundRegionCropd` crops and
``Invertd`` undoes.

:class:`DicomReader` is the MONAI ``ImageReader`` over :func:`read_dicom` and :func:`read_itk`, so
``LoadImaged(keys="image", reader=DicomReader)`` reads these files in any pipeline; the package's one reader,
:class:`~segdino_monai.io.images.SegDINOImageReader`, hands them to it. Every bad file raises
:class:`DicomReadError` (an :class:`~segdino_monai.utils.errors.InputError`) naming the file and the reason.

Only pydicom's error classes are imported at module level; pydicom (2.4 or 3), its pydicom-3-only functions and ITK
are imported where used, so that ``import segdino_monai.dicom`` is light and works in the MONAI Label environment.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import ImageReader, MetaTensor
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.utils import MetaKeys, ensure_tuple
from pydicom.errors import BytesLengthException, InvalidDicomError

from segdino_monai.io.ultrasound_regions import ULTRASOUND_REGION_KEY, ultrasound_region
from segdino_monai.utils.errors import InputError

__all__ = [
    "DICOM_SUFFIXES",
    "ITK_EXTENSIONS",
    "NON_IMAGE_SOP_CLASSES",
    "DicomReadError",
    "DicomReader",
    "check_image_dataset",
    "check_pixel_data_length",
    "dcmread",
    "frame_numbers",
    "image_shape",
    "is_dicom_file",
    "is_non_image_sop_class",
    "is_itk_file",
    "number_of_frames",
    "pixel_size_mm",
    "read_dicom",
    "read_header",
    "read_itk",
    "ultrasound_region_from_dicom",
]

logger = logging.getLogger(__name__)

#: file name suffixes of DICOM files (any case); files without one are recognised by their DICM preamble.
DICOM_SUFFIXES = (".dcm", ".dicom")
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
_PREAMBLE = 128  # a DICOM Part 10 file: 128 bytes of preamble, then b"DICM"
# DicomReader parses files with values over this size left in the file (read when used): a cine's pixel data stays
# there and its frames are read from the file one at a time, so memory is bounded by a frame, not by the video
_DEFER_SIZE = 64 * 1024
# what pydicom raises on a file that is missing, not DICOM, truncated or with garbled tags and values (element
# values are parsed when first used, so these can come from any attribute access, not only from dcmread)
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    InvalidDicomError,
    BytesLengthException,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    NotImplementedError,
    struct.error,
)
# what the pixel-data plugins (pylibjpeg, Pillow, pyjpegls, RLE) and ITK/GDCM raise on data they cannot decode
_DECODE_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, *_PARSE_ERRORS)


class DicomReadError(InputError):
    """A file that cannot be read as an image; the message names the file and the reason."""


def _fail(path: str | Path, reason: str) -> DicomReadError:
    return DicomReadError(f"{path}: {' '.join(reason.split())}")  # one line: decoder messages span several


def is_non_image_sop_class(sop_class: str) -> bool:
    """Whether a SOP Class UID is one of :data:`NON_IMAGE_SOP_CLASSES` or a class under one (SEG, SR, ...)."""
    sop_class = str(sop_class)
    return any(sop_class == uid or sop_class.startswith(f"{uid}.") for uid in NON_IMAGE_SOP_CLASSES)


def is_dicom_file(path: str | Path) -> bool:
    """Whether a file starts like a DICOM Part 10 file (the ``DICM`` marker after the 128-byte preamble).

    This is how files without a ``.dcm`` name, as PACS exports often write them, are told from other files.
    """
    try:
        with open(path, "rb") as stream:
            return stream.read(_PREAMBLE + 4)[_PREAMBLE:] == b"DICM"
    except OSError:
        return False


def is_itk_file(path: str | Path) -> bool:
    """Whether a file is read through ITK rather than as DICOM (by its extension)."""
    return str(path).lower().endswith(ITK_EXTENSIONS)


def dcmread(path: str | Path, stop_before_pixels: bool = False, defer_size: int | None = None) -> Any:
    """Read a DICOM file; files without a preamble/file meta are read with ``force=True`` when they parse.

    ``stop_before_pixels`` leaves the pixel data out; ``defer_size`` (bytes) leaves larger values in the file until
    they are used, so the pixel data element is there without being read.
    """
    import pydicom

    try:
        return pydicom.dcmread(str(path), defer_size=defer_size, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        pass
    except _PARSE_ERRORS as err:  # missing, unreadable, truncated header, bad tags
        raise _fail(path, f"not a readable DICOM file ({type(err).__name__}: {err})") from err
    try:
        ds = pydicom.dcmread(str(path), defer_size=defer_size, stop_before_pixels=stop_before_pixels, force=True)
    except _PARSE_ERRORS as err:
        raise _fail(path, f"not a DICOM file ({type(err).__name__}: {err})") from err
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise _fail(path, "not a DICOM file (no DICM preamble and no DICOM image attributes)")
    _ensure_transfer_syntax(ds)
    logger.info("%s has no DICOM file meta header: read with force=True", path)
    return ds


def read_header(path: str | Path) -> Any:
    """The DICOM data set of a file without its pixel data (files without file meta are read as by the reader).

    Raises:
        DicomReadError: naming the file, when it is missing or not DICOM.
    """
    return dcmread(path, stop_before_pixels=True)


def image_shape(path: str | Path) -> tuple[int, int]:
    """The ``(rows, columns)`` of a DICOM image from its header (checked to be an image), or of a 2D ITK file.

    Raises:
        DicomReadError: naming the file, when it is missing, not DICOM, not an image, damaged, or (ITK) not 2D.
    """
    path = Path(path)
    if is_itk_file(path):
        array, _ = _itk_image(path)  # 2D files are small: decoding them is the check
        return int(array.shape[1]), int(array.shape[2])
    ds = dcmread(path, defer_size=1024)  # the pixel data element without its value: check_image_dataset needs it
    try:
        check_image_dataset(ds, path)
        return int(ds.Rows), int(ds.Columns)
    except DicomReadError:
        raise
    except _DECODE_ERRORS as err:  # a damaged value, parsed on first use
        raise _fail(path, f"damaged DICOM data ({type(err).__name__}: {err})") from err


def ultrasound_region_from_dicom(ds_or_path: Any) -> tuple[list[int], list[int]] | None:
    """The ``(start, end)`` box (row, column; exclusive end) of the image region of an ultrasound DICOM, or ``None``.

    The region is chosen by the rule of :mod:`segdino_monai.io.ultrasound_regions` (:func:`ultrasound_region`).

    Args:
        ds_or_path: a pydicom ``Dataset`` or a DICOM file path (read without pixel data).

    Raises:
        DicomReadError: naming the file, when a path is not a readable DICOM file.
    """
    if not isinstance(ds_or_path, (str, os.PathLike)):
        region = ultrasound_region(ds_or_path)
        return None if region is None else region.box
    try:
        region = ultrasound_region(read_header(ds_or_path))
    except DicomReadError:
        raise
    except _DECODE_ERRORS as err:  # a damaged value, parsed on first use
        raise _fail(ds_or_path, f"damaged Sequence of Ultrasound Regions ({type(err).__name__}: {err})") from err
    return None if region is None else region.box


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


def frame_numbers(ds: Any, frames: Sequence[int] | int | None, path: str | Path) -> list[int]:
    """The DICOM frame numbers (from 1) to read: all for ``None``; an error naming ``path`` if out of range."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if frames is None:
        return list(range(1, count + 1))
    chosen = [int(frames)] if isinstance(frames, (int, np.integer)) else [int(f) for f in frames]
    bad = [f for f in chosen if not 1 <= f <= count]
    if bad or not chosen:
        frames_text = "1 frame" if count == 1 else f"{count} frames"
        raise _fail(path, f"frame numbers {bad or chosen} outside 1..{count}: the file has {frames_text}")
    return chosen


def check_pixel_data_length(ds: Any, path: str | Path) -> None:
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
    except (AttributeError, KeyError, TypeError, ValueError) as err:  # the attributes it is computed from
        raise _fail(path, f"pixel data size cannot be computed from its attributes ({err})") from err
    stored = _stored_pixel_bytes(ds, path)
    if stored < expected:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        raise _fail(
            path,
            f"pixel data is {stored} bytes where Rows x Columns x SamplesPerPixel x frames x bytes "
            f"({ds.Rows} x {ds.Columns} x {ds.get('SamplesPerPixel', 1)} x {frames} x "
            f"{int(ds.get('BitsAllocated', 8)) / 8:g}) needs {expected}: the file is truncated or damaged",
        )


def _deferred_pixel_data(ds: Any) -> Any:
    """The raw Pixel Data element of a data set read with ``defer_size`` whose value is in the file, or ``None``."""
    from pydicom.dataelem import RawDataElement

    if "PixelData" not in ds:
        return None
    try:
        element = ds.get_item("PixelData", keep_deferred=True)
    except TypeError:  # pydicom 2 (the MONAI Label environment): get_item leaves a deferred value unread anyway
        element = ds.get_item("PixelData")
    if isinstance(element, RawDataElement) and element.value is None and element.length != 0:
        return element
    return None


def _stored_pixel_bytes(ds: Any, path: str | Path) -> int:
    """The bytes of (native) pixel data the file holds: the element's length, or what is left of the file after it.

    A deferred value (:func:`_deferred_pixel_data`) is not read: its length comes from the element header, cut to
    the file's size (a truncated file's header still gives the full length).
    """
    element = _deferred_pixel_data(ds)
    if element is None:
        return len(ds.PixelData or b"")
    try:
        left = os.path.getsize(path) - int(element.value_tell)
    except OSError as err:
        raise _fail(path, f"cannot read it ({err.strerror or err})") from err
    return max(0, min(int(element.length), left))


def _decode_pydicom(ds: Any, numbers: list[int], count: int, path: str | Path | None = None) -> tuple[np.ndarray, str]:
    """Decode the chosen frames with pydicom, trying each available plugin; returns ``(F, H, W[, S])`` and its name.

    When a multi-frame data set's pixel data was left in the file (read with ``defer_size``) and ``path`` is given,
    each frame is read from the file on its own (pydicom's ``pixel_array(path, index=...)`` reads the header and
    that frame's bytes or fragments only), so the memory used is that of the chosen frames, not of the pixel data.
    """
    try:
        from pydicom.pixels import get_decoder, pixel_array
    except ImportError:  # pydicom 2 (the MONAI Label environment pins pydicom<3): its handlers, tried in turn
        array = ds.pixel_array
        return (array if count > 1 else array[None])[[n - 1 for n in numbers]], "pydicom:2"

    syntax = ds.file_meta.TransferSyntaxUID
    decoder = get_decoder(syntax)  # raises NotImplementedError for a transfer syntax pydicom does not know
    if not syntax.is_compressed:
        plugins = [""]
    else:
        plugins = list(decoder.available_plugins)
        if not plugins:
            missing = ", ".join(sorted(decoder.missing_dependencies)) or "a pixel-data plugin"
            raise RuntimeError(f"no pydicom decoder for {syntax.name}: install {missing}")
    # a single frame's deferred value is read whole when used, as a data set read without defer_size holds it
    from_file = path is not None and count > 1 and _deferred_pixel_data(ds) is not None
    errors = []
    for plugin in plugins:
        try:
            if from_file:
                options = {"decoding_plugin": plugin, "transfer_syntax_uid": syntax}  # the syntax: files without meta
                decoded = [pixel_array(str(path), index=n - 1, **options) for n in numbers]
                array = decoded[0][None] if len(decoded) == 1 else np.stack(decoded)
            elif len(numbers) == count:
                array = pixel_array(ds, decoding_plugin=plugin)
                array = array if count > 1 else array[None]
            else:
                array = np.stack([pixel_array(ds, index=n - 1, decoding_plugin=plugin) for n in numbers])
            return array, f"pydicom:{plugin or 'native'}"
        except _DECODE_ERRORS as err:
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
    try:
        from pydicom.pixels import apply_modality_lut, apply_voi_lut
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

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
    """``(F, H, W[, S])`` decoded pixels to ``(F, H, W, 3)`` float (32 or 64 bits) RGB on 0..255."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if samples == 1 and photometric == "PALETTE COLOR" and decoder.startswith("pydicom"):
        try:
            from pydicom.pixels import apply_color_lut
        except ImportError:  # pydicom 2
            from pydicom.pixel_data_handlers.util import apply_color_lut

        rgb = apply_color_lut(array, ds)
        # 16-bit LUT entries: the high byte is the 8-bit colour (0xFF00 is full scale, as GDCM does it)
        return np.floor(rgb / 256.0) if rgb.dtype.itemsize > 1 else rgb.astype(np.float64)
    if samples == 1:
        return np.repeat(_grey_to_255(array, ds)[..., None], 3, axis=-1)
    bits = int(ds.get("BitsStored", 8))
    if bits > 8:
        return array[..., :3].astype(np.float64) * (255.0 / (2.0**bits - 1))
    return array[..., :3].astype(np.float32)  # 8-bit values are exact in float32: no float64 copy of the frames


def pixel_size_mm(ds: Any) -> tuple[list[float] | None, str | None]:
    """The physical size (row, column) in mm of a pixel and where it came from.

    In order: PixelSpacing, ImagerPixelSpacing, then the image region of the Sequence of Ultrasound Regions (its
    PhysicalDeltaY/X when measured in cm; the region is chosen by the rule of
    :mod:`segdino_monai.io.ultrasound_regions`, so the size is the one of the pixels that the ultrasound crop keeps).
    """
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is not None and len(value) == 2 and all(float(v) > 0 for v in value):
            return [float(value[0]), float(value[1])], keyword
    region = ultrasound_region(ds)
    if region is None or region.pixel_size_mm is None:
        return None, None
    return list(region.pixel_size_mm), "SequenceOfUltrasoundRegions"


def _affine(spacing: Sequence[float] | None) -> np.ndarray:
    affine = np.eye(4, dtype=np.float64)
    if spacing is not None:
        affine[0, 0], affine[1, 1] = float(spacing[0]), float(spacing[1])
    return affine


def number_of_frames(ds: Any, path: str | Path = "<dataset>") -> int:
    """NumberOfFrames (1 when absent); a damaged value is an error naming ``path``."""
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except _DECODE_ERRORS as err:
        raise _fail(path, f"damaged DICOM data (NumberOfFrames: {type(err).__name__}: {err})") from err


def _dicom_image(
    ds: Any, path: Path, frames: Sequence[int] | int | None, use_itk: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode the chosen frames of a DICOM data set: the image array and its meta data (see :func:`read_dicom`)."""
    try:
        return _decode_dataset(ds, path, frames, use_itk)
    except DicomReadError:
        raise
    except _DECODE_ERRORS as err:  # a damaged attribute value (parsed on first use) or lookup table
        raise _fail(path, f"damaged DICOM data ({type(err).__name__}: {err})") from err


def _decode_dataset(
    ds: Any, path: Path, frames: Sequence[int] | int | None, use_itk: bool
) -> tuple[np.ndarray, dict[str, Any]]:
    check_image_dataset(ds, path)
    _ensure_transfer_syntax(ds)
    count = number_of_frames(ds)
    numbers = frame_numbers(ds, frames, path)
    check_pixel_data_length(ds, path)
    samples = int(ds.get("SamplesPerPixel", 1))
    try:
        array, decoder = _decode_pydicom(ds, numbers, count, path)
    except _DECODE_ERRORS as err:
        reason = f"pydicom cannot decode {ds.file_meta.TransferSyntaxUID.name} ({err})"
        if not use_itk:
            raise _fail(path, reason) from err
        logger.info("%s: %s; trying ITK (GDCM)", path, reason)
        try:
            array, decoder = _decode_itk(path, numbers, count, samples), "itk:gdcm"
        except _DECODE_ERRORS as itk_err:
            raise _fail(path, f"{reason}; ITK (GDCM) failed too ({itk_err})") from itk_err
    rows, cols = int(ds.Rows), int(ds.Columns)
    if tuple(array.shape[1:3]) != (rows, cols):
        raise _fail(path, f"decoded frames are {array.shape[1:3]} where Rows x Columns is {rows} x {cols}")
    rgb = _to_rgb_255(array, ds, samples, decoder)  # (F, H, W, 3)
    image = np.moveaxis(rgb.astype(np.float32, copy=False), -1, 0)  # (3, F, H, W)
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
        "samples_per_pixel": samples,
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "decoder": decoder,
    }
    if spacing is not None:
        meta.update(pixel_size_mm=spacing, pixel_size_source=spacing_source)
    region = ultrasound_region_from_dicom(ds)
    if region is not None:
        meta[ULTRASOUND_REGION_KEY] = region
    return np.ascontiguousarray(image), _with_geometry(meta, image, spacing)


def _with_geometry(meta: dict[str, Any], image: np.ndarray, spacing: Sequence[float] | None) -> dict[str, Any]:
    """``meta`` with MONAI's keys: the affine (pixel size on its diagonal), spatial shape and channel dimension."""
    meta[MetaKeys.AFFINE] = _affine(spacing)
    meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(image.shape[-2:])  # (rows, columns), for one frame or several
    meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
    return meta


def _as_meta_tensor(image: np.ndarray, meta: dict[str, Any]) -> MetaTensor:
    return MetaTensor(torch.from_numpy(image), meta={**meta, MetaKeys.AFFINE: torch.as_tensor(meta[MetaKeys.AFFINE])})


def read_dicom(path: str | Path, frames: Sequence[int] | int | None = None, use_itk: bool = True) -> MetaTensor:
    """Read a DICOM image as float32 RGB on 0..255, ``(3, H, W)`` for one frame or ``(3, F, H, W)`` for several.

    Args:
        path: the DICOM file (with or without file meta header).
        frames: DICOM frame numbers (from 1) to read; an int reads that one frame as ``(3, H, W)``; ``None`` all.
        use_itk: try ITK (GDCM) when no pydicom plugin decodes the pixel data.

    Returns:
        The image with meta data: the source UIDs (``StudyInstanceUID``, ``SeriesInstanceUID``,
        ``SOPInstanceUID``, ``SOPClassUID``, ``FrameOfReferenceUID``; empty when the file has none), ``Modality``,
        ``frame_numbers``, ``number_of_frames``, ``original_size`` (rows, columns), ``pixel_size_mm`` (row, column)
        and ``pixel_size_source`` (both absent when the size is unknown: ``None`` cannot go through a DataLoader's
        collation), ``ultrasound_region`` (when the file has regions), ``photometric_interpretation``,
        ``transfer_syntax``, ``decoder``, ``filename_or_obj``, and the affine with the pixel size on its diagonal.

    Raises:
        DicomReadError: naming the file and the reason (not DICOM, not an image, truncated, pixel data shorter than
            its attributes say, frame numbers outside the file's frames, no decoder, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "file not found")
    return _as_meta_tensor(*_dicom_image(dcmread(path), path, frames, use_itk))


def _itk_image(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import itk

    try:
        image = itk.imread(str(path))
    except _DECODE_ERRORS as err:
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
    out = np.ascontiguousarray(np.moveaxis(rgb.astype(np.float32), -1, 0))
    spacing = [spacing_xy[1], spacing_xy[0]]
    meta = {
        "filename_or_obj": str(path),
        "frame_numbers": [1],
        "number_of_frames": 1,
        "original_size": [int(out.shape[1]), int(out.shape[2])],
        "samples_per_pixel": components,
        "pixel_size_mm": spacing,
        "pixel_size_source": "itk spacing",
        "decoder": "itk",
    }
    return out, _with_geometry(meta, out, spacing)


def read_itk(path: str | Path) -> MetaTensor:
    """Read a 2D (or 2D+channels) NIfTI, MHA/MHD or NRRD file through ITK as ``(3, H, W)`` float32 on 0..255.

    Grey images are scaled from their minimum and maximum (8-bit images are kept as they are) and repeated to three
    channels. ``pixel_size_mm`` comes from the ITK spacing (row, column).

    Raises:
        DicomReadError: naming the file, when ITK cannot read it or it is not 2D.
    """
    return _as_meta_tensor(*_itk_image(Path(path)))


class DicomReader(ImageReader):
    """MONAI ``ImageReader`` for DICOM images and 2D NIfTI/MHA/MHD/NRRD files: ``(3, H, W)`` float32 RGB on 0..255.

    ``LoadImaged(keys="image", reader=DicomReader(), image_only=True)`` gives what :func:`read_dicom` (or
    :func:`read_itk`) gives for one frame, with the same meta data. :meth:`read` only names the files;
    :meth:`get_data` decodes them, so a bad file raises :class:`DicomReadError` (an
    :class:`~segdino_monai.utils.errors.InputError` naming the file) out of ``LoadImaged`` as it is, instead of MONAI
    trying its other readers on it and raising "cannot find a suitable reader".

    Files: names ending in ``.dcm``/``.dicom`` or an ITK extension (:data:`ITK_EXTENSIONS`), and files of any other
    name that start with the ``DICM`` marker (:func:`is_dicom_file`; DICOM files without an extension, as PACS
    exports write them, or named after their UID). A DICOM data set without preamble and file meta (old ACR-NEMA
    style) is read when its name ends in ``.dcm``/``.dicom``.

    Frames: segmentation works on one 2D frame. ``frame`` picks the DICOM frame number (from 1) of a multi-frame file
    (set it before each call, ``reader.frame = n``, as ``segdino dicom`` does frame by frame; the DICOM data set of
    the last multi-frame file is kept, so reading its frames one by one parses it once; its pixel data stays in the
    file, from which each frame is read on its own: memory is bounded by a frame, never the whole cine, for native
    and encapsulated (compressed) pixel data alike, except where only the ITK fallback decodes it, which reads the
    whole file). A multi-frame file read with
    ``frame=None`` raises :class:`DicomReadError` naming the file and its frame count and pointing to
    ``segdino dicom``, rather than segmenting its first frame with a warning: the inference engine reports and
    skips such a file and goes on, where a first-frame mask would silently stand for a whole cine loop (a warning is
    easily lost in a batch log). Single-frame files read the same with ``frame=None`` or ``frame=1``.

    Args:
        frame: the DICOM frame number (from 1) to read from multi-frame files; ``None`` for single-frame files only.
        use_itk: try ITK (GDCM) when no pydicom plugin decodes the pixel data.
        reverse_indexing: swap the two spatial axes (``(3, W, H)``, the order of MONAI's other readers), with the
            affine, ``original_size``, ``pixel_size_mm`` and the ultrasound region; ``False`` by default, for the
            file's row/column order.
        kwargs: ignored (``LoadImage`` passes its reader options to every reader).
    """

    def __init__(
        self, frame: int | None = None, use_itk: bool = True, reverse_indexing: bool = False, **kwargs: Any
    ) -> None:
        super().__init__()
        self.frame = frame
        self.use_itk = bool(use_itk)
        self.reverse_indexing = bool(reverse_indexing)
        self._cached: tuple[tuple[str, int, int], Any] | None = None

    @property
    def frame(self) -> int | None:
        """The DICOM frame number (from 1) read from multi-frame files, or ``None``."""
        return self._frame

    @frame.setter
    def frame(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise InputError(f"frame={value!r}: a DICOM frame number is a whole number from 1 (or None)")
        self._frame = None if value is None else int(value)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (DataLoader workers, spawn) without the cached data set."""
        return {**self.__dict__, "_cached": None}

    def clear_cache(self) -> None:
        """Drop the kept multi-frame data set (its header), e.g. when a cine loop's frames have all been read."""
        self._cached = None

    @staticmethod
    def claims(filename: str | os.PathLike) -> bool:
        """Whether this reader reads a file: by its name, else (any other name) by its DICM marker."""
        name = str(filename).lower()
        return name.endswith(DICOM_SUFFIXES + ITK_EXTENSIONS) or is_dicom_file(filename)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file is one this reader reads (:meth:`claims`)."""
        return all(self.claims(name) for name in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> list[Path] | Path:
        """The files to read (decoded by :meth:`get_data`, so that a bad file's own error reaches the caller)."""
        paths = [Path(name) for name in ensure_tuple(data)]
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img: list[Path] | Path) -> tuple[np.ndarray, dict]:
        """Decode the files: the ``(3, H, W)`` array (several files: concatenated on channels) and its meta data.

        Raises:
            DicomReadError: naming the file and the reason (see :func:`read_dicom`), also for a multi-frame file
                without a ``frame``, and for a ``frame`` outside the file's frames.
        """
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        for path in img if isinstance(img, list) else [img]:
            array, meta = self._load(path)
            if self.reverse_indexing:
                array, meta = _transposed(array, meta)
            arrays.append(array)
            _copy_compatible_dict(meta, compatible)
        return _stack_images(arrays, compatible), compatible

    def _load(self, path: Path) -> tuple[np.ndarray, dict[str, Any]]:
        if is_itk_file(path):
            if self.frame not in (None, 1):
                raise _fail(path, f"frame {self.frame} asked for, but frames apply to DICOM files only")
            return _itk_image(path)
        ds = self._dataset(path)
        count = number_of_frames(ds, path)
        if count > 1 and self.frame is None:
            raise _fail(
                path,
                f"a multi-frame DICOM ({count} frames) and no frame chosen: this pipeline segments one 2D image per "
                f"file; segment its frames with `segdino dicom {path}` (every frame, or --frames to choose)",
            )
        return _dicom_image(ds, path, self.frame, self.use_itk)

    def _dataset(self, path: Path) -> Any:
        """The file's DICOM data set; the last multi-frame one is kept while the file is unchanged.

        Values over :data:`_DEFER_SIZE` bytes (a cine's pixel data) are left in the file: the frames are then decoded
        from the file one at a time (:func:`_decode_pydicom`), and the kept data set holds the header only.
        """
        try:
            stat = path.stat()
        except OSError as err:
            raise _fail(path, f"cannot read it ({err.strerror or err})") from err
        if not path.is_file():
            raise _fail(path, "not a file")
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        ds = dcmread(path, defer_size=_DEFER_SIZE)
        self._cached = (key, ds) if number_of_frames(ds, path) > 1 else None
        return ds


def _transposed(array: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Swap the two spatial axes of a ``(3, H, W)`` image and of every row/column pair in its meta data."""
    meta = dict(meta)
    affine = np.array(meta[MetaKeys.AFFINE])
    affine[:, [0, 1]] = affine[:, [1, 0]]
    meta[MetaKeys.AFFINE] = affine
    meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(meta[MetaKeys.SPATIAL_SHAPE])[::-1].copy()
    for key in ("original_size", "pixel_size_mm"):
        if key in meta:
            meta[key] = list(meta[key])[::-1]
    if ULTRASOUND_REGION_KEY in meta:
        start, end = meta[ULTRASOUND_REGION_KEY]
        meta[ULTRASOUND_REGION_KEY] = (list(start)[::-1], list(end)[::-1])
    return np.ascontiguousarray(np.swapaxes(array, 1, 2)), meta
