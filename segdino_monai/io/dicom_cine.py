"""Frame rate and frame times of a multi-frame DICOM (ultrasound cine loop, video endoscopy), for ``segdino video``.

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

from fractions import Fraction
from typing import Any

import numpy as np

from segdino_monai.io.dicom_reader import DicomReadError

__all__ = ["DEFAULT_FRAME_RATE", "CineFrameError", "cine_timing"]

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
