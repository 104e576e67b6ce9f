"""A multi-frame DICOM (ultrasound cine loop, video endoscopy) as a frame source of ``segdino video``.

The frames are read one at a time by the bundle's own loader (the config's ``load`` steps with the package's
:class:`~segdino_monai.dicom.reader.DicomReader`, its ``frame`` set per call, as
:meth:`~segdino_monai.dicom.pipeline.DicomSegmenter.segment` does), so each frame carries the meta data that
``segdino dicom`` sees: the ultrasound image region that the ultrasound config's crop uses, and the pixel size in mm
(PixelSpacing, ImagerPixelSpacing, else the ultrasound region's physical deltas), from which ``segdino video``'s CSV
gives the area in mm2. Only the decoded frames of the current batch are held; the reader keeps the file's data set
(its encoded pixel data as stored in the file) while the frames are read.

Frame rate and times (PS3.3 C.7.6.5, Cine Module), acquisition timing first:

1. Frame Time (0018,1063), the nominal time per frame in ms: frame ``k`` (from 0) is at ``k * FrameTime``;
2. Frame Time Vector (0018,1065), the time increments in ms between frames (the first is 0): frame ``k`` is at the
   sum of the first ``k + 1`` increments, and the rate is the frame count over the time they span;
3. Cine Rate (0018,0040), frames per second;
4. Recommended Display Frame Rate (0008,2144), frames per second;
5. none of them: :data:`DEFAULT_FRAME_RATE`, 25 frames/s (as for a video file that declares no rate), with a
   warning.

The overlay video gets that rate as a fraction with a denominator up to 1001 (30 for 33.333 ms, 30000/1001 for
NTSC's 29.97), at constant rate: a Frame Time Vector's uneven increments show in the CSV's times only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.dicom.pipeline import DicomSegmenter
from segdino_monai.dicom.reader import DicomReadError, _number_of_frames, image_shape, read_header
from segdino_monai.errors import InputError, input_error_message

__all__ = ["DEFAULT_FRAME_RATE", "CineFrameError", "DicomCine", "cine_timing"]

logger = logging.getLogger(__name__)

#: frames per second of a source that declares none (a multi-frame DICOM without timing, a video file without rate).
DEFAULT_FRAME_RATE = Fraction(25)


class CineFrameError(DicomReadError):
    """A frame of a multi-frame DICOM that cannot be read: names the file and the frame (the ones before it were)."""


def _positive(ds: Any, keyword: str) -> float | None:
    try:
        value = float(ds.get(keyword) or 0)
    except (TypeError, ValueError):  # a damaged value: the next source of timing is tried
        return None
    return value if np.isfinite(value) and value > 0 else None


def cine_timing(ds: Any, count: int) -> tuple[Fraction, np.ndarray, str]:
    """The frame rate, each frame's time in seconds and the attribute they come from (see the module notes).

    Args:
        ds: the DICOM data set (header).
        count: its number of frames.

    Returns:
        ``(frames per second, (count,) times in s from 0, keyword or "default")``.
    """
    frame_time = _positive(ds, "FrameTime")
    if frame_time is not None:
        return _fraction(1000.0 / frame_time), np.arange(count) * frame_time / 1000.0, "FrameTime"
    try:
        vector = np.asarray([float(v) for v in (ds.get("FrameTimeVector") or [])], dtype=np.float64)
    except (TypeError, ValueError):
        vector = np.zeros(0)
    if len(vector) == count > 1 and np.all(np.isfinite(vector)) and np.all(vector[1:] > 0):
        times = np.cumsum(vector) / 1000.0  # the first increment is 0 (C.7.6.5.1.2)
        return _fraction((count - 1) / (times[-1] - times[0])), times - times[0], "FrameTimeVector"
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        rate = _positive(ds, keyword)
        if rate is not None:
            return _fraction(rate), np.arange(count) / rate, keyword
    return DEFAULT_FRAME_RATE, np.arange(count) / float(DEFAULT_FRAME_RATE), "default"


def _fraction(rate: float) -> Fraction:
    return Fraction(rate).limit_denominator(1001)


class DicomCine:
    """The frames of a multi-frame DICOM file, read one at a time by a :class:`DicomSegmenter`'s loader.

    Args:
        path: the DICOM file.
        segmenter: the bundle pipeline whose ``load`` steps read the frames.

    Raises:
        InputError: the file is not a readable DICOM image, or has a single frame (``segdino dicom`` segments it).
    """

    def __init__(self, path: str | Path, segmenter: DicomSegmenter) -> None:
        self.path = Path(path)
        self.segmenter = segmenter
        header = read_header(self.path)
        self.total = _number_of_frames(header, self.path)
        if self.total < 2:
            raise InputError(f"{self.path}: a single-frame DICOM image, not a cine loop; segment it with segdino dicom")
        self.size = image_shape(self.path)  # checked: an image with pixel data and its rows and columns
        self.rate, self.times, timing = cine_timing(header, self.total)
        if timing == "default":
            logger.warning(
                "%s: no Frame Time, Frame Time Vector, Cine Rate or Recommended Display Frame Rate; the overlay video "
                "plays at %s frames/s",
                self.path,
                self.rate,
            )

    def frames(self, first: int, end: int | None, every: int) -> Iterator[tuple[int, float, np.ndarray, dict]]:
        """``(frame from 0, time in s, (H, W, 3) uint8 RGB, the loader's output)`` of the chosen frames, in order.

        Frame ``k`` is the DICOM frame number ``k + 1``.

        Raises:
            CineFrameError: a frame cannot be read (naming the file and the frame); the frames before it were given.
        """
        seg = self.segmenter
        last = self.total if end is None else min(end, self.total)
        for number in range(first, last, every):
            seg.reader.frame = number + 1
            try:
                data = seg.preprocessing({"image": str(self.path)}, end=seg.load_steps)
            except Exception as err:  # a frame that does not decode: named; anything else is a bug
                message = input_error_message(err)
                if message is None:
                    raise
                raise CineFrameError(
                    f"{self.path}: cannot decode frame {number} (DICOM frame number {number + 1}: "
                    f"{message.removeprefix(f'{self.path}: ')}); the frames before it were read"
                ) from err
            image = np.moveaxis(np.asarray(data["image"]), 0, -1)
            rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8)  # the loader's RGB is on 0..255
            yield number, float(self.times[number]), rgb, data

    def close(self) -> None:
        """Let the reader drop the file's data set (it keeps the last multi-frame one, until another is read)."""
        self.segmenter.reader.frame = None
        self.segmenter.reader._cached = None  # DicomReader's cache of that data set (same package)
