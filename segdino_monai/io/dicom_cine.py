"""Frame count and timing of a multi-frame DICOM (ultrasound cine loop, video endoscopy): the Cine Module's rates."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from segdino_monai.io.dicom_reader import DicomReadError

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
