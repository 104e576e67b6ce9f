"""segdino video on short videos made from the fixture ultrasound cine (never committed): outputs, masks, bad files.

The videos are written here with PyAV from the real frames of the multi-frame ultrasound DICOM; H.264 is lossy, so
the masks are compared with the bundle pipeline on the decoded frames (saved as lossless PNG), not the DICOM pixels.
"""

from __future__ import annotations

import csv
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segdino_monai.cli import main
from segdino_monai.io.images import read_image
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.services.video import FrameRange, VideoSegmenter, run_video, segment_video
from segdino_monai.services.video_file import VideoDecodeError
from segdino_monai.utils.errors import InputError
from tests.conftest import BUNDLE, TINY_OVERRIDES, import_or_skip
from tests.services.video.conftest import RATE, write_video

av = import_or_skip("av", "pip install -e '.[video]'", "segdino video not tested")

CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"
FRAMES = 12


def _decoded(path: Path) -> tuple[list[np.ndarray], Fraction]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.to_ndarray(format="rgb24") for f in container.decode(stream)], stream.average_rate


@pytest.fixture(scope="module")
def videos(dicom_dir, tmp_path_factory) -> dict[str, Path]:
    frames = [read_image(dicom_dir / CINE, k) for k in range(1, FRAMES + 1)]
    folder = tmp_path_factory.mktemp("videos")
    return {
        "mp4": write_video(folder / "cine.mp4", frames, "libx264"),
        "avi": write_video(folder / "cine.avi", frames, "mpeg4"),
        "mkv": write_video(folder / "cine.mkv", frames, "libx264"),
    }


@pytest.fixture(scope="module")
def unsmoothed(decoder_checkpoint) -> BundlePredictor:
    overrides = {**TINY_OVERRIDES, "temporal_smoothing": "off"}
    return BundlePredictor(str(BUNDLE), "random", decoder_checkpoint, "ultrasound", overrides)


def _bundle_masks(frames: list[np.ndarray], segmenter: BundlePredictor, folder: Path) -> list[np.ndarray]:
    """The bundle pipeline's masks of decoded frames, each saved as a lossless PNG file and read as the bundle reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"{k}.png")
    return [segmenter(folder / f"{k}.png") > 0 for k in range(len(frames))]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_video_outputs_match_the_bundle_on_the_decoded_frames(videos, unsmoothed, tmp_path):
    source = videos["mp4"]
    result = segment_video(source, tmp_path / "out", VideoSegmenter(unsmoothed, batch_size=5), masks="png")
    assert result.frames == FRAMES and result.error is None
    decoded, rate = _decoded(source)
    overlay, overlay_rate = _decoded(tmp_path / "out" / "overlay.mp4")
    assert len(overlay) == FRAMES and overlay_rate == rate == RATE
    assert overlay[0].shape == decoded[0].shape == (240, 320, 3)
    rows = _rows(tmp_path / "out" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(FRAMES))
    assert float(rows[3]["time_s"]) == pytest.approx(3 / 30, abs=1e-3)
    for k, (expected, row) in enumerate(zip(_bundle_masks(decoded, unsmoothed, tmp_path / "png"), rows, strict=True)):
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"frame_{k:06d}.png")) > 0
        np.testing.assert_array_equal(mask, expected)
        assert int(row["area_pixels"]) == int(expected.sum()) > 0
        assert 0.5 <= float(row["mean_probability"]) <= 1.0  # inside the mask: above the threshold
    # a rerun replaces the files and the masks folder whole, leaving no temporary file and no earlier mask
    rerun = FrameRange(end="3")
    segment_video(source, tmp_path / "out", VideoSegmenter(unsmoothed), rerun, masks="png", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frames.csv", "masks", "overlay.mp4"]
    assert len(list((tmp_path / "out" / "masks").iterdir())) == len(_rows(tmp_path / "out" / "frames.csv")) == 3


def test_bad_options_stop_the_command_before_anything_is_written(videos, tmp_path):
    out = tmp_path / "out"
    assert main(["video", str(videos["mp4"]), "-o", str(out), "--every", "0"]) == 2
    assert main(["video", str(videos["mp4"]), "-o", str(out), "--start", "soon"]) == 2
    assert main(["video", str(tmp_path / "missing.mp4"), "-o", str(out)]) == 2
    assert not out.exists()


@pytest.mark.parametrize("kind", ["avi", "mkv"])
def test_truncated_video_keeps_the_frames_before_it_and_the_next_video_runs(kind, videos, segmenter_factory, tmp_path):
    source = videos[kind]
    with av.open(str(source)) as container:  # where each frame's packet lies in the file
        packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
    position, size = packets[6]
    truncated = tmp_path / "in" / f"cut.{kind}"
    truncated.parent.mkdir()
    truncated.write_bytes(source.read_bytes()[: position + size // 2])  # cut in the middle of frame 6
    segmenter = VideoSegmenter(segmenter_factory("ultrasound"), batch_size=4)
    done, errors = run_video([truncated, videos["mp4"]], tmp_path / "out", segmenter, masks="video", progress=False)
    assert [Path(r.source).name for r in done] == ["cine.mp4"]  # the next video is segmented
    assert len(errors) == 1 and errors[0].startswith(f"{truncated}: ")
    reached = int(re.search(r"frames 0-(\d+) were read", errors[0]).group(1)) + 1
    assert reached in (6, 7)  # frame 6's half may decode (FFmpeg conceals the rest)
    rows = _rows(tmp_path / "out" / "cut" / "frames.csv")
    overlay, _ = _decoded(tmp_path / "out" / "cut" / "overlay.mp4")
    masks, _ = _decoded(tmp_path / "out" / "cut" / "masks.mkv")
    assert [int(r["frame"]) for r in rows] == list(range(reached))  # the CSV says how far it got
    assert len(overlay) == len(masks) == reached
    assert set(np.unique(masks[0])) <= {0, 255}  # lossless mask video
    assert len(_rows(tmp_path / "out" / "cine" / "frames.csv")) == FRAMES


def test_not_a_video_or_no_frame_is_named(videos, segmenter_factory, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    with pytest.raises(InputError, match="notes.mp4: cannot open as a video, frame 0 not reached"):
        segment_video(bad, tmp_path / "out", VideoSegmenter(segmenter_factory("ultrasound")), progress=False)
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="cine.mp4: no frame from --start 20"):  # past the last frame
        segment_video(
            videos["mp4"], tmp_path / "out", VideoSegmenter(segmenter_factory("ultrasound")), FrameRange("20")
        )
    assert list((tmp_path / "out").iterdir()) == []  # no unreadable empty video
    assert issubclass(VideoDecodeError, InputError)


def test_cli_smooths_by_default_over_the_chosen_frames_and_reports_a_bad_file(
    videos, unsmoothed, decoder_checkpoint, tmp_path
):
    bad = tmp_path / "in" / "broken.mov"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00" * 100)
    sets = [a for k, v in TINY_OVERRIDES.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    status = main(["video", str(bad), str(videos["mp4"]), "-o", str(tmp_path / "out"), "--bundle-root", str(BUNDLE),
                   "--backbone-weights", "random", "--checkpoint", str(decoder_checkpoint), "--modality", "ultrasound",
                   "--start", "2", "--end", "0.3s", "--masks", "png", "--no-progress", *sets])  # fmt: skip
    assert status == 1  # the bad file is reported and skipped
    assert not (tmp_path / "out" / "broken").exists()
    rows = _rows(tmp_path / "out" / "cine" / "frames.csv")
    assert [int(r["frame"]) for r in rows] == list(range(2, 9))  # from frame 2 to 0.3 s (frame 9) excluded
    decoded, _ = _decoded(videos["mp4"])
    plain = _bundle_masks(decoded[2:9], unsmoothed, tmp_path / "png")
    smoothed = [
        np.asarray(Image.open(tmp_path / "out" / "cine" / "masks" / f"frame_{k:06d}.png")) > 0 for k in range(2, 9)
    ]
    np.testing.assert_array_equal(smoothed[0], plain[0])  # the first frame of a video has no past
    assert any((s != p).any() for s, p in zip(smoothed[1:], plain[1:], strict=True))  # later ones are smoothed


def test_smoothing_restarts_with_each_video(videos, segmenter_factory, unsmoothed, tmp_path):
    segmenter = VideoSegmenter(segmenter_factory("ultrasound"), batch_size=4)  # smoothing on
    segment_video(videos["mp4"], tmp_path / "a", segmenter, FrameRange(end="4"), masks="png", progress=False)
    # frame 4 follows frame 3 of the same file: without the reset it would be smoothed with frames 0-3
    segment_video(videos["mp4"], tmp_path / "b", segmenter, FrameRange("4", "5"), masks="png", progress=False)
    decoded, _ = _decoded(videos["mp4"])
    expected = _bundle_masks(decoded[4:5], unsmoothed, tmp_path / "png")[0]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b" / "masks" / "frame_000004.png")) > 0, expected)


def test_odd_frame_size_keeps_its_size(dicom_dir, segmenter_factory, tmp_path):
    frames = [np.ascontiguousarray(read_image(dicom_dir / CINE, k)[:239, :319]) for k in (1, 2, 3)]
    source = tmp_path / "odd.avi"
    with av.open(str(source), "w") as container:  # uncompressed: H.264 in 4:2:0 needs an even size
        stream = container.add_stream("rawvideo", rate=25)
        stream.height, stream.width, stream.pix_fmt = 239, 319, "bgr24"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
    segment_video(source, tmp_path / "out", VideoSegmenter(segmenter_factory("ultrasound")), progress=False)
    overlay, rate = _decoded(tmp_path / "out" / "overlay.mp4")
    assert len(overlay) == 3 and overlay[0].shape == (239, 319, 3) and rate == 25  # H.264 in 4:4:4
