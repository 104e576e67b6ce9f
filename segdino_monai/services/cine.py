"""A multi-frame DICOM (ultrasound cine loop, video endoscopy) as a frame source of ``segdino video``.

The frames are read one at a time by the bundle's own loader (the config's ``load`` steps with the package's
:class:`~segdino_monai.io.dicom_reader.DicomReader`, its ``frame`` set per call, as
:meth:`~segdino_monai.services.predictor.BundlePredictor.load` does), so each frame carries the meta data that
``segdino dicom`` sees: the ultrasound image region that the ultrasound config's crop uses, and the pixel size in mm
(PixelSpacing, ImagerPixelSpacing, else the ultrasound region's physical deltas), from which ``segdino video``'s CSV
gives the area in mm2. Only the decoded frames of the current batch are held: the reader keeps the file's header
while the frames are read, and reads each frame's pixel data (native, or its compressed fragments) from the file on
its own, so memory does not grow with the length of the cine.

The frame count and the frame times are :mod:`segdino_monai.io.dicom_cine`'s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from segdino_monai.io.dicom_cine import CineFrameError, cine_timing
from segdino_monai.io.dicom_reader import image_shape, number_of_frames, read_header
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.utils.errors import InputError, input_error_message

__all__ = ["DicomCine"]

logger = logging.getLogger(__name__)


class DicomCine:
    """The frames of a multi-frame DICOM file, read one at a time by a :class:`BundlePredictor`'s loader.

    Args:
        path: the DICOM file.
        segmenter: the bundle pipeline whose ``load`` steps read the frames.

    Raises:
        InputError: the file is not a readable DICOM image, or has a single frame (``segdino dicom`` segments it).
    """

    def __init__(self, path: str | Path, segmenter: BundlePredictor) -> None:
        self.path = Path(path)
        self.segmenter = segmenter
        header = read_header(self.path)
        self.total = number_of_frames(header, self.path)
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
            try:
                data = seg.load(self.path, number + 1)
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
        """Let the reader drop the file's header (it keeps the last multi-frame one, until another is read)."""
        self.segmenter.reader.frame = None
        self.segmenter.reader.clear_cache()
