"""TemporalSmoother: the EMA's arithmetic, its time constant, where a stream restarts, and bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from segdino_monai.transforms import TemporalSmoothd, TemporalSmoother, frame_position
from segdino_monai.utils.errors import InputError


def test_ema_weights_and_step_response():
    smoother = TemporalSmoother(time_constant=2.0)
    alpha = 1 - math.exp(-1 / 2)
    assert smoother.alpha == pytest.approx(alpha)
    first = smoother(np.full((1, 2, 2), 0.2, np.float32))
    np.testing.assert_allclose(first, 0.2)  # the first frame is its own average
    outputs = [float(smoother(np.ones((1, 2, 2), np.float32))[0, 0, 0]) for _ in range(4)]
    expected = [1 - 0.8 * (1 - alpha) ** k for k in range(1, 5)]  # a step from 0.2 to 1 decays as exp(-k / tau)
    np.testing.assert_allclose(outputs, expected, rtol=1e-6)
    # a step from 0 to 1 crosses 0.5 after ceil(tau * ln 2) frames: 2 frames for tau = 2
    smoother.reset()
    smoother(np.zeros(1))
    crossed = [float(smoother(np.ones(1))[0]) > 0.5 for _ in range(3)]
    assert crossed == [False, True, True]


def test_zero_time_constant_is_no_smoothing_and_outputs_are_copies():
    smoother = TemporalSmoother(0)
    frames = np.random.default_rng(0).random((3, 1, 4, 4))
    for frame in frames:
        np.testing.assert_array_equal(smoother(frame), frame)
    smoother = TemporalSmoother(3)
    out = smoother(torch.ones(1, 2, 2))
    out.zero_()  # a caller writing into the output does not change the average
    assert float(smoother(torch.ones(1, 2, 2)).min()) == pytest.approx(1.0)


def test_positions_restart_the_average_unless_the_next_frame_of_the_same_source():
    smoother = TemporalSmoother(2)
    zero, one = np.zeros(1), np.ones(1)
    smoother(zero, ("a.dcm", 1))
    assert 0 < smoother(one, ("a.dcm", 2))[0] < 1  # frame 2 follows frame 1: averaged
    assert smoother(one, ("b.dcm", 3))[0] == 1  # another file: restarted
    smoother(zero, ("b.dcm", 4))
    assert smoother(one, ("b.dcm", 6))[0] == 1  # a skipped frame: restarted
    smoother(zero, ("b.dcm", 7))
    assert smoother(one, ("b.dcm", 7))[0] == 1  # the same frame again: restarted
    assert smoother(np.ones(2), None)[0] == 1  # another shape: restarted, whatever the position


def test_dictionary_version_reads_positions_from_meta_data():
    smooth = TemporalSmoothd("pred", time_constant=2)

    def frame(value: float, source: str | None, number: int | None) -> dict:
        meta = {} if source is None else {"filename_or_obj": source, "frame_numbers": [number]}
        return {"pred": MetaTensor(torch.full((1, 2, 2), value), meta=meta)}

    assert float(smooth(frame(0.0, "cine.dcm", 1))["pred"].max()) == 0
    second = smooth(frame(1.0, "cine.dcm", 2))["pred"]
    assert 0 < float(second.max()) < 1 and second.meta["frame_numbers"] == [2]  # meta data kept
    # still images (no frame numbers) are never mixed, even two in a row
    assert float(smooth(frame(0.0, None, None))["pred"].max()) == 0
    assert float(smooth(frame(1.0, None, None))["pred"].min()) == 1
    assert frame_position({"filename_or_obj": "x.dcm", "frame_numbers": [1, 2]}) is None  # several frames at once
    assert frame_position({"filename_or_obj": "x.dcm", "frame_numbers": np.array([4])}) == ("x.dcm", 4)


@pytest.mark.parametrize("value", [-1, "two", float("inf"), None])
def test_bad_time_constant_is_an_input_error(value):
    with pytest.raises(InputError, match="smoothing_frames=.*number of frames >= 0"):
        TemporalSmoother(value)
