"""Reading 2D image files as the field's datasets ship them, into the one RGB form the model is trained on.

Every picture the package reads (``prepare-data``, training, evaluation, inference, MONAI Label) goes through
:func:`read_image`, or :class:`SegDINOImageReader` (the package's one MONAI ``ImageReader``) inside ``LoadImaged``.
The result is always ``uint8`` RGB in the file's row/column order (``(H, W, 3)``; channel-first after
``LoadImaged``), whatever the file holds (DICOM and NIfTI/MHA/NRRD files, which ``SegDINOImageReader`` also reads,
go through :mod:`segdino_monai.io.dicom_reader` instead):

- 8-bit grey is repeated to three channels; 16-bit (and 12-bit TIFF) grey is scaled by its full range, rounded, so
  a 16-bit twin of an 8-bit picture (``v * 257``) gives the same values; 32-bit integer grey must fit 16 bits;
  floating-point grey on 0..1 is scaled by 255 (else clipped to 0..255).
- Palette images go through their palette; 1-bit images become 0/255.
- Alpha (RGBA, LA, palette transparency) is **dropped**, not composited: the colour stored under it is kept, as
  the SegDINO reference code (``Image.convert("RGB")``) does, so an RGBA twin of an RGB picture gives that picture.
- CMYK JPEGs (Adobe's inverted ones too; Pillow undoes the inversion) are converted through their embedded ICC
  profile to sRGB when they have one, else with the usual ``(255 - C)(255 - K) / 255`` formula.
- TIFFs are read with tifffile (``Image.open`` cannot open CVC-ClinicDB's three samples per pixel tagged
  MINISBLACK, and ITK reads them as one grey channel): three or four samples are colour (and alpha) whatever the
  photometric tag says; planar (separate) and contiguous samples give the same array; MINISWHITE is inverted;
  palette TIFFs go through their colour map; CMYK TIFFs as above. A TIFF compressed with a codec that tifffile
  cannot decode without the optional ``imagecodecs`` package (LZW, JPEG) is read by Pillow instead.
- A file with several pages or frames (multi-page TIFF, animated GIF) gives its **first** page, with a warning
  naming the file: segmentation works on one 2D picture, and the first page is the main image in the TIFFs that
  carry thumbnails or reduced-resolution copies. Multi-picture JPEGs (MPO) give their main picture silently.
- EXIF orientation is **ignored**: pixels come in stored order, so an image and its mask (which carries no EXIF)
  always agree.

Decompression bombs: a file whose header announces more than :func:`max_image_pixels` pixels (default
:data:`DEFAULT_MAX_IMAGE_PIXELS`, 64 million: an 8000x6000 photo passes, a 14000x13000 scan does not; set the
environment variable ``SEGDINO_MAX_IMAGE_PIXELS`` to change it) is refused from its header, before any decoding.
Every unreadable, truncated or refused file raises :class:`~segdino_monai.utils.errors.InputError` naming the file.
"""

from __future__ import annotations

import io
import logging
import math
import os
import struct
import threading
import warnings
import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from monai.data import ImageReader
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.data.utils import is_supported_format
from monai.transforms import LoadImaged
from monai.utils import MetaKeys, ensure_tuple
from PIL import Image, ImageCms, UnidentifiedImageError
from tifffile import PHOTOMETRIC

from segdino_monai.io.dicom_reader import DicomReader, image_shape
from segdino_monai.utils.errors import InputError

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_SUFFIXES",
    "MAX_PIXELS_ENV",
    "LoadRGBImaged",
    "SegDINOImageReader",
    "image_size",
    "max_image_pixels",
    "open_image",
    "read_image",
    "to_rgb",
    "verify_image",
]

logger = logging.getLogger(__name__)

#: largest image (width x height) read by default: 64 megapixels (8000x6000 = 48 MP passes, 14000x13000 does not).
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000
#: environment variable that overrides :data:`DEFAULT_MAX_IMAGE_PIXELS` (a positive whole number of pixels).
MAX_PIXELS_ENV = "SEGDINO_MAX_IMAGE_PIXELS"
#: file name suffixes of the pictures :class:`SegDINOImageReader` reads with :func:`read_image` (any case).
IMAGE_SUFFIXES: tuple[str, ...] = ("png", "jpg", "jpeg", "bmp", "tif", "tiff", "gif", "webp")

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Pillow's own bomb check (a warning past 89 MP, an error past 179 MP) is switched off while a header is read, so
# that our documented limit, checked right after, is the only one; the lock keeps threads from racing on it.
_PIL_LIMIT_LOCK = threading.Lock()
# what decoders raise on a damaged or foreign file (Pillow: struct.error and zlib.error on some truncated files)
_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error, zlib.error)


def max_image_pixels() -> int:
    """The largest number of pixels (width x height) an image file may announce: ``SEGDINO_MAX_IMAGE_PIXELS`` or 64 M.

    Raises:
        InputError: when the environment variable is set to something other than a positive whole number.
    """
    text = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1 and value == int(value)):
        raise InputError(
            f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r} is not a positive whole number of pixels "
            f"(e.g. {MAX_PIXELS_ENV}=200000000); unset it for the default {DEFAULT_MAX_IMAGE_PIXELS}."
        )
    return int(value)


def _check_pixels(path: Path, width: int, height: int) -> None:
    limit = max_image_pixels()
    if width * height > limit:
        raise InputError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} megapixels), over the limit of "
            f"{limit / 1e6:g} megapixels against decompression bombs; shrink the image, or raise the limit with "
            f"the environment variable {MAX_PIXELS_ENV}={width * height} if you trust the file."
        )


def _is_dicom_or_itk(path: str | os.PathLike) -> bool:
    """Whether a file goes to the DICOM reader: not a picture by its name, and DICOM or ITK by name or DICM marker."""
    return not is_supported_format(str(path).lower(), list(IMAGE_SUFFIXES)) and DicomReader.claims(path)


def _dicom_or_itk_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of a DICOM (from its header) or 2D ITK file, after the pixel limit check."""
    rows, cols = image_shape(path)
    _check_pixels(path, cols, rows)
    return cols, rows


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(4) in _TIFF_MAGIC


def _unreadable(path: Path, err: BaseException) -> InputError:
    reason = " ".join(str(err).split()) or type(err).__name__
    return InputError(f"{path}: cannot be read as an image ({reason}); replace or remove the file.")


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"{path}: no such image file; check the path.")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes); replace or remove it.")


def _open_pil(path: Path) -> Image.Image:
    """``Image.open`` with our bomb limit instead of Pillow's; header only, nothing decoded yet."""
    with _PIL_LIMIT_LOCK:
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            image = Image.open(path)
        except (UnidentifiedImageError, *_ERRORS) as err:
            raise _unreadable(path, err) from err
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    try:
        _check_pixels(path, *image.size)
    except InputError:
        image.close()
        raise
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """The ``(width, height)`` of an image file from its header, after the decompression-bomb check.

    DICOM and 2D NIfTI/MHA/NRRD files (those :class:`SegDINOImageReader` hands to the DICOM reader) too: DICOM from
    its header, checked to be an image with pixel data.

    Args:
        path: the image file.

    Raises:
        InputError: naming the file, when it is missing, empty, not an image, or over the pixel limit.
    """
    path = Path(path)
    _require_file(path)
    if _is_dicom_or_itk(path):
        return _dicom_or_itk_size(path)
    if _is_tiff(path):
        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                height, width = int(page.imagelength), int(page.imagewidth)
        except _ERRORS as err:
            raise _unreadable(path, err) from err
        _check_pixels(path, width, height)
        return width, height
    with _open_pil(path) as image:
        return image.size


def verify_image(path: str | Path) -> tuple[int, int]:
    """The ``(width, height)`` of an image file, after checking that its data is complete, as cheaply as possible.

    PNG files are checked chunk by chunk with their CRCs without decoding; JPEG files are decoded at 1/8 scale
    (a truncated file still fails); TIFFs and other formats are decoded in full. The pixel limit is checked first.
    DICOM files are checked from their header only (an image with pixel data; truncated pixel data is found when the
    DICOM reader decodes it, with an error naming the file); 2D NIfTI/MHA/NRRD files are decoded.

    Args:
        path: the image file.

    Raises:
        InputError: naming the file, when it is missing, empty, truncated, corrupt, not an image, or over the limit.
    """
    path = Path(path)
    _require_file(path)
    if _is_dicom_or_itk(path):
        return _dicom_or_itk_size(path)
    if _is_tiff(path):
        with open_image(path) as image:
            return image.size
    with _open_pil(path) as image:
        size = image.size
        try:
            if image.format == "PNG":
                image.verify()
            else:
                if image.format == "JPEG":
                    image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                image.load()
        except _ERRORS as err:
            raise _unreadable(path, err) from err
    return size


def open_image(path: str | Path) -> Image.Image:
    """Decode an image file into a Pillow image in its stored mode (grey, 16-bit grey, palette, RGB, RGBA, CMYK ...).

    TIFFs are decoded with tifffile and handed over as the Pillow image of the same content (see the module notes);
    other formats are Pillow's. Masks use this directly (a palette index or grey level is a class index);
    images go on through :func:`to_rgb`.

    Args:
        path: the image file.

    Returns:
        A loaded Pillow image (its first page for multi-page files); ``format`` is the file's format.

    Raises:
        InputError: naming the file, when it is missing, empty, truncated, not an image, or over the pixel limit.
    """
    path = Path(path)
    _require_file(path)
    if _is_tiff(path):
        image = _read_tiff(path)
        if image is not None:
            return image
    image = _open_pil(path)
    try:
        frames = int(getattr(image, "n_frames", 1))
        if frames > 1 and image.format != "MPO":
            logger.warning("%s has %d pages/frames: only the first one is read", path, frames)
        image.load()
    except _ERRORS as err:
        image.close()
        raise _unreadable(path, err) from err
    return image


def _read_tiff(path: Path) -> Image.Image | None:
    """A TIFF's first page through tifffile, or ``None`` when Pillow should try (a codec tifffile lacks)."""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            _check_pixels(path, int(page.imagewidth), int(page.imagelength))
            full_pages = [p for p in tif.pages if not getattr(p, "is_reduced", False)]
            if len(full_pages) > 1:
                logger.warning("%s has %d pages: only the first one is read", path, len(full_pages))
            try:
                values = page.asarray()
            except ValueError as err:
                if "imagecodecs" in str(err):
                    logger.debug("%s: %s; reading it with Pillow", path, err)
                    return None
                raise
            return _tiff_to_pil(page, values, path)
    except InputError:
        raise
    except (tifffile.TiffFileError, *_ERRORS) as err:
        raise _unreadable(path, err) from err


def _tiff_to_pil(page: Any, values: np.ndarray, path: Path) -> Image.Image:
    """The Pillow image holding a decoded TIFF page ``values`` (tifffile's axes of ``page``)."""
    axes = page.axes
    if "S" in axes:
        values = np.moveaxis(values, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    if axes.rstrip("S") != "YX":  # leading axes of length 1 (tifffile keeps none for one page, but be safe)
        values = values.reshape(values.shape[-3:] if axes.endswith("S") else values.shape[-2:])
    photometric = page.photometric
    bits = int(page.bitspersample)
    if photometric == PHOTOMETRIC.PALETTE and values.ndim == 2:
        colormap = np.asarray(page.colormap)  # (3, 2**bits), 16-bit entries
        colours = (colormap.astype(np.uint32) * 255 + 32767) // 65535
        palette = np.zeros((256, 3), dtype=np.uint8)
        count = min(256, colours.shape[1])
        palette[:count] = colours[:, :count].T
        image = Image.fromarray(values.astype(np.uint8), mode="L")
        image.putpalette(palette.ravel().tolist())
        image.format = "TIFF"
        return image
    if values.dtype == bool:  # bilevel: a "1" image (0/255 as RGB; 0/1 as a class-index mask, as Pillow's own)
        if photometric == PHOTOMETRIC.MINISWHITE:
            values = ~values
        if values.ndim == 2:
            image = Image.fromarray(values)
            image.format = "TIFF"
            return image
        values = values.astype(np.uint8) * 255
    elif np.issubdtype(values.dtype, np.integer) and bits < 8:  # 2- to 7-bit grey: scaled to 0..255
        values = (values.astype(np.uint16) * (255 // (2**bits - 1))).astype(np.uint8)
    elif np.issubdtype(values.dtype, np.integer) and values.dtype.itemsize <= 2 and 8 < bits < 16:
        values = ((values.astype(np.uint32) * 65535 + (2**bits - 1) // 2) // (2**bits - 1)).astype(np.uint16)
    if photometric == PHOTOMETRIC.MINISWHITE and values.ndim == 2:
        values = (np.iinfo(values.dtype).max - values) if np.issubdtype(values.dtype, np.integer) else 1.0 - values
    channels = values.shape[-1] if values.ndim == 3 else 1
    if values.ndim == 3 and channels == 1:
        values, channels = values[..., 0], 1
    if channels > 1 and values.dtype != np.uint8:
        values = _to_uint8(values, path)
    if photometric == PHOTOMETRIC.SEPARATED and channels >= 4:
        image = Image.frombytes("CMYK", (values.shape[1], values.shape[0]), np.ascontiguousarray(values[..., :4]))
    elif channels == 1:  # Image.fromarray picks the mode: L (8-bit), I;16 (16-bit), I (32-bit integer), F (float)
        if np.issubdtype(values.dtype, np.floating):
            values = values.astype(np.float32)
        elif values.dtype not in (np.uint8, np.uint16):
            values = values.astype(np.int32)
        image = Image.fromarray(np.ascontiguousarray(values.astype(values.dtype.newbyteorder("="))))
    elif channels in (2, 3, 4):  # LA, RGB, RGBA
        image = Image.fromarray(np.ascontiguousarray(values))
    else:
        raise InputError(f"{path}: TIFF with {channels} samples per pixel is not a 2D picture; save it as RGB.")
    image.format = "TIFF"
    return image


def _to_uint8(values: np.ndarray, path: Path) -> np.ndarray:
    """Scale grey or colour values of any dtype to 0..255 by the dtype's full range (floats: 0..1, else clipped)."""
    if values.dtype == np.uint8:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8) * 255
    if np.issubdtype(values.dtype, np.floating):
        scale = 255.0 if float(np.nanmax(values, initial=0.0)) <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(values, nan=0.0) * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(values.dtype, np.unsignedinteger) and values.dtype.itemsize <= 2:
        top = int(np.iinfo(values.dtype).max)
        return ((values.astype(np.uint32) * 255 + top // 2) // top).astype(np.uint8)
    if int(values.min(initial=0)) >= 0 and int(values.max(initial=0)) <= 65535:
        return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)  # 16-bit data in 32-bit "I"
    raise InputError(
        f"{path}: {values.dtype} pixel values from {values.min()} to {values.max()} have no standard 8-bit scale; "
        "save the image as 8- or 16-bit."
    )


def to_rgb(image: Image.Image, path: str | Path = "<image>") -> np.ndarray:
    """The ``(H, W, 3)`` ``uint8`` RGB array of a decoded image (see the module notes for each mode).

    Args:
        image: a loaded Pillow image, e.g. from :func:`open_image`.
        path: the file, for messages.

    Returns:
        An ``(H, W, 3)`` ``uint8`` array in the image's row/column order (read-only when it shares Pillow's
        buffer: copy it, or cast it as ``LoadImage`` does, before writing into it).

    Raises:
        InputError: naming the file, for pixel values without a standard 8-bit scale.
    """
    path = Path(path)
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image)
    if mode in ("L", "1"):
        grey = np.asarray(image.convert("L"))
    elif mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = _to_uint8(np.asarray(image), path)
    elif mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(image, path))
    elif mode in ("LA", "La"):
        grey = np.asarray(image.getchannel(0))
    else:  # RGBA, RGBa, RGBX, P, PA, YCbCr, LAB, HSV: Pillow's conversion, alpha dropped
        return np.asarray(image.convert("RGBA" if mode in ("P", "PA") else "RGB"))[..., :3]
    return np.repeat(grey[..., None], 3, axis=-1)


def _cmyk_to_rgb(image: Image.Image, path: Path) -> Image.Image:
    icc = image.info.get("icc_profile")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError) as err:
            logger.warning("%s: its ICC profile cannot be used (%s); converting CMYK to RGB without it", path, err)
    return image.convert("RGB")


def read_image(path: str | Path, frame: int | None = None) -> np.ndarray:
    """Read any supported 2D image file as ``(H, W, 3)`` ``uint8`` RGB in the file's row/column order.

    DICOM and 2D NIfTI/MHA/NRRD files are read as :class:`SegDINOImageReader` reads them (through
    :class:`~segdino_monai.io.dicom_reader.DicomReader`), rounded to 8 bits.

    Args:
        path: the image file.
        frame: the DICOM frame number (from 1) of a multi-frame DICOM file; ignored for pictures.

    Returns:
        The RGB array (see the module notes for how each kind of file is converted).

    Raises:
        InputError: naming the file, when it is missing, empty, truncated, not an image, or over the pixel limit, or
            a multi-frame DICOM file without ``frame``.
    """
    if _is_dicom_or_itk(path):
        array, _ = DicomReader(frame=frame).get_data(Path(path))
        return np.clip(np.rint(np.moveaxis(array, 0, -1)), 0, 255).astype(np.uint8)
    with open_image(path) as image:
        return to_rgb(image, path)


class SegDINOImageReader(ImageReader):
    """The package's MONAI ``ImageReader``: every image file it reads, channel-first RGB in file row/column order.

    ``LoadImaged(keys, reader=SegDINOImageReader, ensure_channel_first=True)`` gives ``(3, H, W)`` in the file's
    row/column order (``spatial_shape`` is ``(H, W)`` too, unlike ``PILReader``'s ``(W, H)``), the same order as
    :class:`~segdino_monai.io.masks.LoadMask` gives masks:

    - pictures (:data:`IMAGE_SUFFIXES`, and any file that is not one of the next kinds) through :func:`read_image`,
      as ``uint8`` on 0..255 (see the module notes);
    - DICOM files (``.dcm``/``.dicom``, or any name with the ``DICM`` marker, as PACS exports write them without an
      extension) and 2D NIfTI/MHA/MHD/NRRD files through :class:`~segdino_monai.io.dicom_reader.DicomReader`, as
      ``float32`` RGB on 0..255 with their meta data (UIDs, frame numbers, ``pixel_size_mm`` and the affine,
      ``ultrasound_region``). A multi-frame DICOM needs :attr:`frame` (see ``DicomReader``).

    :meth:`read` only names the files and :meth:`get_data` decodes them, so a bad file raises its
    :class:`~segdino_monai.utils.errors.InputError` (naming it) out of ``LoadImaged`` instead of MONAI trying its other
    readers on it.

    Args:
        reverse_indexing: swap the two spatial axes (``(W, H, 3)``, the order of MONAI's other readers); ``False``
            by default, for the file's row/column order.
        frame: the DICOM frame number (from 1) read from multi-frame DICOM files (see :attr:`frame`).
        kwargs: ignored (``LoadImage`` passes its reader options to every reader).
    """

    def __init__(self, reverse_indexing: bool = False, frame: int | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.reverse_indexing = bool(reverse_indexing)
        self.dicom_reader = DicomReader(frame=frame, reverse_indexing=self.reverse_indexing)

    @property
    def frame(self) -> int | None:
        """The DICOM frame number (from 1) read from multi-frame DICOM files; set it before each call.

        ``None`` (the default) reads single-frame files and refuses a multi-frame one with an
        :class:`~segdino_monai.utils.errors.InputError` naming it and its frame count.
        """
        return self.dicom_reader.frame

    @frame.setter
    def frame(self, value: int | None) -> None:
        self.dicom_reader.frame = value

    def clear_cache(self) -> None:
        """Let the DICOM reader drop the multi-frame data set it keeps (see ``DicomReader.clear_cache``)."""
        self.dicom_reader.clear_cache()

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file is a picture (:data:`IMAGE_SUFFIXES`, any case) or one the DICOM reader claims."""
        return all(
            is_supported_format(str(name).lower(), list(IMAGE_SUFFIXES)) or DicomReader.claims(name)
            for name in ensure_tuple(filename)
        )

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> list[Path] | Path:
        """The files to read (decoded by :meth:`get_data`, so that a bad file's own error reaches the caller)."""
        paths = [Path(name) for name in ensure_tuple(data)]
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img: list[Path] | Path) -> tuple[np.ndarray, dict]:
        """Decode the files: the contiguous ``(3, H, W)`` array (several files: stacked first) and its meta data."""
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        for path in img if isinstance(img, list) else [img]:
            if _is_dicom_or_itk(path):
                array, header = self.dicom_reader.get_data(path)
            else:
                array, header = self._picture(path)
            arrays.append(array)
            _copy_compatible_dict(header, compatible)
        return _stack_images(arrays, compatible), compatible

    def _picture(self, path: Path) -> tuple[np.ndarray, dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_image(path) as image:
                header = {"format": image.format, "mode": image.mode, "width": image.width, "height": image.height}
                # channel first and contiguous here, on 8 bits (the channel-last array is dropped at once): moving
                # the channel after the float conversion would leave a strided view that the first resize or crop
                # copies again at four bytes a value
                array = np.ascontiguousarray(np.moveaxis(to_rgb(image, path), -1, 0))
        if self.reverse_indexing:
            array = np.ascontiguousarray(np.swapaxes(array, 1, 2))
        header[MetaKeys.SPATIAL_SHAPE] = np.asarray(array.shape[1:])
        header[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return array, header


class LoadRGBImaged(LoadImaged):
    """``LoadImaged`` that always reads with :class:`SegDINOImageReader`: ``(3, H, W)`` RGB in file row/column order.

    The reader is passed at call time, so a bad file raises the reader's :class:`~segdino_monai.utils.errors.InputError`
    naming it, never MONAI's "cannot find a suitable reader" (whose fallback loop would also let another reader read
    a file ours refuses, a multi-frame DICOM as a volume say). Pixel values stay on 0..255 (``float32`` by default,
    as ``LoadImaged``'s).

    Args:
        keys: image keys.
        dtype: the output dtype (``None`` keeps the reader's: ``uint8`` for pictures, ``float32`` for DICOM).
        allow_missing_keys: do not raise when a key is absent.
        reader: the :class:`SegDINOImageReader` to read with (default: a new one); pass one to share it, e.g. to
            set its ``frame`` for each frame of a multi-frame DICOM file.
        kwargs: other ``LoadImaged`` arguments (``image_only``, ``meta_keys`` ...).
    """

    def __init__(
        self,
        keys: Any,
        dtype: Any = np.float32,
        allow_missing_keys: bool = False,
        reader: SegDINOImageReader | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("image_only", True)
        kwargs.setdefault("ensure_channel_first", True)
        self.rgb_reader = reader if reader is not None else SegDINOImageReader()
        super().__init__(keys, reader=self.rgb_reader, dtype=dtype, allow_missing_keys=allow_missing_keys, **kwargs)

    def __call__(self, data: Mapping[Hashable, Any], reader: ImageReader | None = None) -> dict[Hashable, Any]:
        """Load each key's file with :class:`SegDINOImageReader` (or ``reader`` when given)."""
        return super().__call__(data, reader or self.rgb_reader)
