"""Temporal smoothing, on by default for cines, measured on the fixture cine: less flicker, no lag behind the frames.

Flicker is 1 - the mean IoU of the masks of consecutive frames. The tiny seeded random decoder's masks change from
frame to frame with the speckle; measured on frames 1-15 (tau = 2 frames, the default): flicker 0.0223 without
smoothing, 0.0111 with it; Dice against the unsmoothed mask of the same frame 0.992 on average, 0.983 at worst (on
all 30 frames: 0.0262 and 0.0130; Dice 0.990, 0.977).
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image

from segdino_monai.services.dicom_batch import run_dicom
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.utils.errors import input_error_message
from tests.conftest import BUNDLE, TINY_OVERRIDES

CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def _flicker(masks: np.ndarray) -> float:
    return 1.0 - float(np.mean([_iou(a, b) for a, b in zip(masks[:-1], masks[1:], strict=True)]))


def test_smoothing_lowers_flicker_without_lagging(dicom_dir, segmenter_factory, decoder_checkpoint, tmp_path):
    source = dicom_dir / CINE
    frames = 15  # of 30: enough to measure, half the time
    # smoothing on (the default): what segdino dicom writes, frame by frame
    run_dicom([source], tmp_path / "out", segmenter_factory("ultrasound"), frames=range(1, frames + 1), progress=False)
    folder = tmp_path / "out" / pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID
    smoothed = np.stack([np.asarray(Image.open(folder / f"frame_{k:04d}_mask.png")) > 0 for k in range(1, frames + 1)])
    # off, as a command line sets it (--set temporal_smoothing=off)
    plain = BundlePredictor(
        str(BUNDLE), "random", decoder_checkpoint, "ultrasound", {**TINY_OVERRIDES, "temporal_smoothing": "off"}
    )
    raw = np.stack([plain(source, k) > 0 for k in range(1, frames + 1)])
    assert 0.1 < raw.mean() < 0.9  # real masks, neither empty nor full
    flicker_raw, flicker_smoothed = _flicker(raw), _flicker(smoothed)
    assert flicker_raw > 0.01  # measured 0.0223: the random decoder's masks do flicker
    assert flicker_smoothed < 0.7 * flicker_raw  # measured 0.0111 (ratio 0.50)
    # no lag: every smoothed frame stays close to that frame's own unsmoothed mask
    dice = [_dice(s, r) for s, r in zip(smoothed, raw, strict=True)]
    assert np.array_equal(smoothed[0], raw[0])  # the first frame has no past
    assert min(dice) > 0.95 and np.mean(dice) > 0.98  # measured min 0.983, mean 0.992


@pytest.mark.parametrize(("setting", "name"), [({"temporal_smoothing": "maybe"}, "temporal_smoothing"),
                                               ({"smoothing_frames": -2}, "smoothing_frames")])  # fmt: skip
def test_bad_smoothing_settings_name_the_option(decoder_checkpoint, setting, name):
    with pytest.raises(Exception) as info:  # MONAI wraps the config's errors; the CLI finds ours in the chain
        BundlePredictor(str(BUNDLE), "random", decoder_checkpoint, "ultrasound", {**TINY_OVERRIDES, **setting})
    message = input_error_message(info.value)
    assert message is not None and name in message and str(next(iter(setting.values()))) in message
