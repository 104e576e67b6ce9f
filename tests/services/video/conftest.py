"""The video tests' video writer (the DICOM fixtures and the tiny segmenter are tests/conftest.py's)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["RATE", "write_video"]

RATE = Fraction(30)


def write_video(path: Path, frames: list[np.ndarray], codec: str) -> Path:
    """Write ``(H, W, 3)`` uint8 RGB frames as a video at :data:`RATE` frames/s with PyAV (imported here: optional)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=RATE)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path
