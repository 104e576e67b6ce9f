"""A video file as a frame source of ``segdino video``: frames decoded in order by PyAV, a cut or corrupt file noticed.

A decoded frame is not a file, so it enters the config's preprocessing after its ``load`` steps, as the
``(3, H, W)`` float32 RGB MetaTensor on 0..255 that the loader gives for a picture (:func:`frame_item`).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor

from segdino_monai.io.dicom_cine import DEFAULT_FRAME_RATE
from segdino_monai.utils.errors import InputError

__all__ = ["VideoDecodeError", "VideoFile", "frame_item"]


class VideoDecodeError(InputError):
    """A video that stopped decoding part way: names the file and the frame reached."""


def frame_item(rgb: np.ndarray, source: str, number: int) -> dict[str, Any]:
    """One decoded ``(H, W, 3)`` uint8 frame as the config's ``load`` steps give a picture (number from 1)."""
    array = torch.from_numpy(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)).astype(np.float32))
    meta = {
        "filename_or_obj": source,
        "frame_numbers": [number],
        "spatial_shape": np.asarray(array.shape[1:]),
        "original_channel_dim": 0,
    }
    return {"image": MetaTensor(array, meta=meta)}


class VideoFile:
    """The frames of a video file, decoded in order by PyAV (the frame source of a video; see ``DicomCine``)."""

    def __init__(self, path: Path) -> None:
        import av

        try:
            self.container = av.open(str(path))
            self.stream = self.container.streams.video[0]
        except (av.error.FFmpegError, IndexError) as err:
            reason = "no video stream" if isinstance(err, IndexError) else str(err)
            raise InputError(
                f"{path}: cannot open as a video, frame 0 not reached ({reason}); give a .mp4, .avi, .mkv or .mov "
                "file or a multi-frame DICOM (a .mp4 or .mov cut short before its index, written at the end, cannot "
                "be read at all)"
            ) from err
        self.path, self.source = path, str(path.resolve())
        self.rate = Fraction(self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FRAME_RATE)
        self.size = (self.stream.codec_context.height, self.stream.codec_context.width)
        self.total = int(self.stream.frames or 0) or None

    def frames(self, first: int, end: int | None, every: int) -> Iterator[tuple[int, float, np.ndarray, dict]]:
        """``(frame from 0, time in s, (H, W, 3) uint8 RGB, the frame as the loader gives it)`` of the chosen frames."""
        for number, seconds, rgb in _decode(self.container, self.stream, self.path):
            if end is not None and number >= end:
                break
            if number >= first and (number - first) % every == 0:
                yield number, seconds, rgb, frame_item(rgb, self.source, number + 1)

    def close(self) -> None:
        """Close the file."""
        self.container.close()


def _decode(container: Any, stream: Any, path: Path) -> Iterator[tuple[int, float, np.ndarray]]:
    """``(frame number from 0, time in s, RGB frame)`` of every frame; a decoding error names the frame reached."""
    import av

    number = 0
    rate = float(stream.average_rate or stream.guessed_rate or 0) or None
    try:
        for frame in container.decode(stream):
            seconds = float(frame.time) if frame.time is not None else number / (rate or 1.0)
            yield number, seconds, frame.to_ndarray(format="rgb24")
            number += 1
    except av.error.FFmpegError as err:
        raise VideoDecodeError(
            f"{path}: cannot decode frame {number} ({err}); frames 0-{number - 1} were read"
        ) from err
    declared = _declared_frames(container, stream)
    if declared and number < declared:
        raise VideoDecodeError(
            f"{path}: truncated: the video stopped at frame {number}, its header announces "
            f"{declared if stream.frames else f'about {declared + 1}'} frames; frames 0-{number - 1} were read"
        )


def _declared_frames(container: Any, stream: Any) -> int | None:
    """The frame count the file's header declares (AVI, MP4), else its duration times its frame rate (Matroska).

    A file cut short decodes without an error up to the cut: this count is how the cut is noticed. A frame is
    allowed for rounding where the count comes from the duration.
    """
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / 1_000_000  # av.time_base: microseconds
    else:
        return None
    return max(0, round(seconds * float(rate)) - 1) if rate else None
