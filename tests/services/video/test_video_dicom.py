"""segdino video on a multi-frame DICOM (the fixture ultrasound cine): the outputs of a video, the masks of the bundle
pipeline on the same frames (as segdino dicom reads them: region crop, inversion), the cine's rate, areas in mm2."""

from __future__ import annotations

import csv
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from segdino_monai.cli import main
from segdino_monai.io.dicom_cine import cine_timing
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.services.video import FrameRange, VideoSegmenter, find_videos, run_video, segment_video
from segdino_monai.utils.errors import InputError
from tests.conftest import BUNDLE, TINY_OVERRIDES, import_or_skip

av = import_or_skip("av", "pip install -e '.[video]'", "segdino video not tested")

CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30 frames, Frame Time 33.333 ms, US region 0.051 cm pixels
SINGLE = "us/pydicom__pydicom/examples_palette.dcm"
SEG = "seg/ImagingDataCommons__highdicom/seg_image_ct_binary.dcm"


@pytest.fixture(scope="module")
def unsmoothed(decoder_checkpoint) -> BundlePredictor:
    overrides = {**TINY_OVERRIDES, "temporal_smoothing": "off"}
    return BundlePredictor(str(BUNDLE), "random", decoder_checkpoint, "ultrasound", overrides)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_cine_gives_a_video_s_outputs_with_the_masks_of_segdino_dicom_and_areas_in_mm2(dicom_dir, unsmoothed, tmp_path):
    source = dicom_dir / CINE
    result = segment_video(source, tmp_path / "out", VideoSegmenter(unsmoothed, batch_size=8), masks="png")
    assert result.frames == 30 and result.error is None
    with av.open(str(tmp_path / "out" / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        overlay = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.average_rate == 30  # 1000 / 33.333 ms
    assert len(overlay) == 30 and overlay[0].shape == (240, 320, 3)
    rows = _rows(tmp_path / "out" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(30))
    assert [float(r["time_s"]) for r in rows] == pytest.approx([k * 0.033333 for k in range(30)], abs=1e-6)
    # the pixel size, independently: the US region's physical deltas, in cm per pixel
    region = pydicom.dcmread(source, stop_before_pixels=True).SequenceOfUltrasoundRegions[0]
    assert int(region.PhysicalUnitsXDirection) == int(region.PhysicalUnitsYDirection) == 3  # cm
    pixel_mm2 = float(region.PhysicalDeltaX) * 10 * float(region.PhysicalDeltaY) * 10
    for k, row in enumerate(rows):
        expected = unsmoothed(source, k + 1)  # segdino dicom's pipeline on DICOM frame k + 1
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"frame_{k:06d}.png")) > 0
        np.testing.assert_array_equal(mask, expected > 0)
        assert int(row["area_pixels"]) == int(mask.sum()) > 0
        assert float(row["area_mm2"]) == pytest.approx(mask.sum() * pixel_mm2, abs=1e-4)
    # the region crop and its inversion ran: nothing outside the region (columns before 84, rows before 31)
    assert not mask[:31].any() and not mask[:, :84].any()


def test_cine_rate_and_times_from_each_timing_attribute():
    def header(**values) -> Dataset:
        ds = Dataset()
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return ds

    rate, times, where = cine_timing(header(FrameTime="33.366666666667", CineRate=10), 3)
    assert (rate, where) == (Fraction(30000, 1001), "FrameTime")  # NTSC's 29.97 frames/s
    assert times == pytest.approx([0, 1.001 / 30, 2.002 / 30])
    rate, times, where = cine_timing(header(FrameTimeVector=["0", "40", "40", "60"]), 4)
    assert where == "FrameTimeVector" and times == pytest.approx([0, 0.04, 0.08, 0.14])
    assert rate == Fraction(3, 140) * 1000  # 3 intervals in 140 ms
    assert cine_timing(header(FrameTimeVector=["0", "40"], CineRate=24), 3)[::2] == (24, "CineRate")  # wrong length
    rate, times, where = cine_timing(header(RecommendedDisplayFrameRate=15), 2)
    assert (rate, where) == (15, "RecommendedDisplayFrameRate") and times == pytest.approx([0, 1 / 15])
    assert cine_timing(header(FrameTime="0"), 2)[::2] == (25, "default")


def test_inputs_cine_dicom_and_video_alike_single_frame_refused(dicom_dir, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(dicom_dir / CINE, inputs / "cine.dcm")
    shutil.copy(dicom_dir / CINE, inputs / "UID1234")  # no suffix: found by its DICM marker
    shutil.copy(dicom_dir / SINGLE, inputs / "still.dcm")  # one frame: segdino dicom's
    (inputs / "notes.txt").write_text("not an input")
    shutil.copy(dicom_dir / SEG, inputs / "seg.dcm")  # 3 frames, but a SEG (segdino dicom's own output): no image
    assert find_videos([inputs]) == [inputs / "UID1234", inputs / "cine.dcm"]
    with pytest.raises(InputError, match="seg.dcm: a DICOM object that is no image"):
        find_videos([inputs / "seg.dcm"])
    with pytest.raises(InputError, match="still.dcm: a single-frame DICOM image, not a cine loop; segment it with"):
        find_videos([inputs / "still.dcm"])
    assert main(["video", str(inputs / "still.dcm"), "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_cine_frames_chosen_smoothed_and_a_bad_frame(dicom_dir, segmenter_factory, unsmoothed, tmp_path):
    ds = pydicom.dcmread(dicom_dir / CINE)
    data = bytearray(ds.PixelData)
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == b"\xff\xd8\xff"]  # each frame's JPEG SOI
    assert len(starts) == 30
    data[starts[7] : starts[7] + 2] = b"\x00\x00"  # frame 7 (DICOM frame 8) is no JPEG any more
    ds.PixelData = bytes(data)
    broken = tmp_path / "in" / "broken.dcm"
    broken.parent.mkdir()
    ds.save_as(broken)
    segmenter = VideoSegmenter(segmenter_factory("ultrasound"), batch_size=3)  # smoothing on
    done, errors = run_video([broken, dicom_dir / CINE], tmp_path / "out", segmenter, FrameRange("2", "0.3s"), "png")
    assert len(errors) == 1 and errors[0].startswith(f"{broken}: cannot decode frame 7 (DICOM frame number 8")
    assert [int(r["frame"]) for r in _rows(tmp_path / "out" / "broken" / "frames.csv")] == [2, 3, 4, 5, 6]
    assert [Path(r.source).name for r in done] == ["examples_ybr_color.dcm"]
    rows = _rows(tmp_path / "out" / "examples_ybr_color" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(2, 9))  # 0.3 s is frame 9 at 30 frames/s
    smoothed = [
        np.asarray(Image.open(tmp_path / "out" / "examples_ybr_color" / "masks" / f"frame_{k:06d}.png")) > 0
        for k in range(2, 9)
    ]
    plain = [unsmoothed(dicom_dir / CINE, k + 1) > 0 for k in range(2, 9)]
    np.testing.assert_array_equal(smoothed[0], plain[0])  # the first frame segmented has no past
    assert any((s != p).any() for s, p in zip(smoothed[1:], plain[1:], strict=True))  # the next ones are smoothed
