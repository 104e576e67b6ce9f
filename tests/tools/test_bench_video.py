"""The benchmark's video section: segdino video timed on a synthetic video, its time split, bf16 skipped where slow."""

from __future__ import annotations

import pytest
import torch

from segdino_monai.tools import bench_video
from segdino_monai.tools.bench_video import markdown_section, synthetic_video, video_speed
from segdino_monai.tools.benchmark import QUICK, BenchmarkConfig
from tests.conftest import import_or_skip

av = import_or_skip("av", "pip install -e '.[video]'", "the video benchmark not tested")


def test_video_speed_splits_segdino_video_s_time_and_skips_bf16_without_native_bf16(tmp_path, monkeypatch):
    # an AVX2-only CPU, simulated: neither AVX512-BF16 nor AMX
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(bench_video, "FRAMES", 16)  # a short video: the test checks the report, not the speed
    # one thread: on a loaded 2-core machine two threads wait on each other (the quick run stays quick)
    video = video_speed(BenchmarkConfig(**{**QUICK, "work_dir": str(tmp_path), "threads": 1, "video": True}))
    assert (video["size"], video["frames"]) == (32, 16)
    rows = {(r["precision"], r["batch"]): r for r in video["rows"]}
    assert rows[("bfloat16", 1)] == {"precision": "bfloat16", "batch": 1, "skipped": "no native bf16"}
    assert rows[("bfloat16", 8)]["skipped"] == "no native bf16"
    for batch in (1, 8):
        row = rows[("float32", batch)]
        assert row["frames"] == 16  # the whole video, after the warm-up run
        parts = [row["decode_ms"], row["model_ms"], row["encode_ms"]]
        assert min(parts) > 0 and sum(parts) <= 1000 / row["frames_per_s"]  # parts of the wall time per frame
        assert row["decode_fraction"] == pytest.approx(row["decode_ms"] * row["frames_per_s"] / 1000)
    assert not (tmp_path / "video").exists()  # the synthetic video and outputs are removed
    table = "\n".join(markdown_section(video))
    assert "| bfloat16 | 8 | skipped: no native bf16 |" in table and "| float32 | 8 | " in table


def test_synthetic_video_is_a_readable_h264_video(tmp_path):
    path = synthetic_video(tmp_path / "v.mp4", frames=6, size=64)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert stream.codec_context.name == "h264" and stream.average_rate == 25
    assert len(frames) == 6 and frames[0].shape == (64, 64, 3)
    assert not (frames[0] == frames[-1]).all()  # the discs move
