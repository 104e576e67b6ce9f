"""Temporal smoothing of per-frame probabilities, so that the masks of a cine loop or video do not flicker.

An exponential moving average (EMA) of the probabilities, frame by frame and streaming (no look-ahead, memory of one
frame): ``s_t = a * p_t + (1 - a) * s_{t-1}`` with ``a = 1 - exp(-1 / tau)``, so that a frame's weight decays as
``exp(-k / tau)`` over the ``k`` following frames; ``tau`` (``time_constant``) is in frames, ``0`` is no smoothing.
The masks come from the smoothed probabilities by the usual threshold or argmax. Speckle and the decoder's noise
change from frame to frame and average out; an edge that really moves keeps its place within about ``tau`` frames
(a step change of the probability crosses 0.5 after ``tau * ln 2`` frames). tests/transforms/test_temporal.py
measures flicker (1 - mean IoU of consecutive masks) and the agreement with the unsmoothed masks on the fixture cine.

Probabilities are averaged rather than features or masks: they are what every output is thresholded from, they
average linearly (an inverse resize or crop of the average is the average of the inverses), and the average of two
probability maps is one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from segdino_monai.utils.errors import InputError

__all__ = ["TemporalSmoothd", "TemporalSmoother", "frame_position"]

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)


class TemporalSmoother(Transform):
    """Streaming EMA of per-frame probabilities: feed the frames in order, get the smoothed probabilities back.

    With ``position`` (source, frame number) given, the average restarts at any frame that does not follow the
    previous one of the same source (another file, a skipped or repeated frame), so independent images are never
    mixed; without it, every call continues the stream until :meth:`reset` (a video read frame by frame).

    Args:
        time_constant: ``tau`` in frames (``>= 0``; ``0``: no smoothing). The default, 2 frames, is 67 ms at 30
            frames/s.

    Raises:
        InputError: for a negative or non-numeric time constant.
    """

    def __init__(self, time_constant: float = 2.0) -> None:
        try:
            tau = float(time_constant)
        except (TypeError, ValueError):
            tau = -1.0
        if not tau >= 0 or math.isinf(tau):
            raise InputError(
                f"smoothing_frames={time_constant!r}: the time constant of the temporal smoothing is a number of "
                "frames >= 0 (0: none; e.g. 2)"
            )
        self.time_constant = tau
        self.alpha = 1.0 if tau == 0 else 1.0 - math.exp(-1.0 / tau)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next frame starts a new average."""
        self._state: Any = None
        self._position: tuple[Hashable, int] | None = None

    def __call__(self, probabilities: ArrayT, position: tuple[Hashable, int] | None = None) -> ArrayT:
        """The smoothed probabilities of the next frame (a new array of the input's type, shape and meta data).

        Args:
            probabilities: one frame's probabilities, any shape (e.g. ``(C, H, W)``).
            position: ``(source, frame number)`` of this frame, or ``None`` to continue the stream.
        """
        previous, self._position = self._position, position
        follows = position is None or (
            previous is not None and position[0] == previous[0] and position[1] == previous[1] + 1
        )
        if self._state is None or not follows or tuple(self._state.shape) != tuple(probabilities.shape):
            self._state = probabilities * 1.0  # a copy, as float
        else:
            self._state = probabilities * self.alpha + self._state * (1.0 - self.alpha)
        return self._state.clone() if isinstance(self._state, torch.Tensor) else self._state.copy()


def frame_position(meta: Mapping[str, Any] | None) -> tuple[Hashable, int] | None:
    """``(source file, frame number)`` of one frame from its meta data, or ``None`` when it does not say.

    The package's reader records ``filename_or_obj`` and ``frame_numbers`` (one number when one frame was read).
    """
    if not meta:
        return None
    source, numbers = meta.get("filename_or_obj"), meta.get("frame_numbers")
    if not source or numbers is None:
        return None
    numbers = [int(n) for n in np.atleast_1d(np.asarray(numbers))]
    return (str(source), numbers[0]) if len(numbers) == 1 else None


class TemporalSmoothd(MapTransform):
    """Dictionary version of :class:`TemporalSmoother` for a bundle's postprocessing, on probabilities.

    Each frame's position comes from its meta data (:func:`frame_position`): consecutive frames of one multi-frame
    file (a DICOM cine segmented frame by frame) are smoothed, anything else (still images, another file) passes
    unchanged.

    Args:
        keys: the probability keys (``pred`` after the activation).
        time_constant: ``tau`` in frames (see :class:`TemporalSmoother`).
        allow_missing_keys: do not fail on a missing key.
    """

    def __init__(self, keys: KeysCollection, time_constant: float = 2.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.smoothers = {key: TemporalSmoother(time_constant) for key in self.keys}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """``data`` with the probabilities under ``keys`` smoothed (a still image's unchanged)."""
        d = dict(data)
        for key in self.key_iterator(d):
            meta = d[key].meta if isinstance(d[key], MetaTensor) else d.get(f"{key}_meta_dict")
            position = frame_position(meta)
            if position is None:  # nothing says which frame this is: never mixed with another image
                self.smoothers[key].reset()
                position = ("", 0)
            d[key] = self.smoothers[key](d[key], position)
        return d
