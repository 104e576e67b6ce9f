"""Frames/s of ``segdino video`` (issue 15, point 4): the benchmark's video section (``segdino bench --video``).

A synthetic H.264 video (:data:`FRAMES` frames of moving discs on a gradient, square at the benchmark's smallest size,
256x256 by default; no network, no data set) is segmented by :func:`~segdino_monai.services.video.segment_video`, the
code ``segdino video`` runs, with the bundle's ``inference.json`` (endoscopy preset, temporal smoothing on, as the
command's defaults) and a fresh decoder on the benchmark's backbone. Each precision and batch size is timed after a
warm-up run of one batch, and the wall time is split as ``segment_video`` records it: ``decode`` (PyAV decoding and the
frame's conversion), ``model`` (the config's preprocessing, network and postprocessing) and ``encode`` (overlays, the
H.264 encoder, the CSV). bf16 is measured only where the device computes it natively
(:func:`~segdino_monai.networks.nets.dinov3_backbone.use_bf16` with ``"auto"``): elsewhere (an AVX2-only CPU) a bf16
matmul is about 100 times slower than fp32, and the row says it was skipped.
"""

from __future__ import annotations

import logging
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segdino_monai.utils.errors import InputError

__all__ = ["FRAMES", "markdown_section", "synthetic_video", "video_speed"]

logger = logging.getLogger(__name__)

#: frames of the synthetic video (at 25 frames/s).
FRAMES = 48
BATCHES = (1, 8)
PRECISIONS = ("float32", "bfloat16")


def synthetic_video(path: str | Path, frames: int = FRAMES, size: int = 256) -> Path:
    """Write a ``size`` x ``size`` H.264 video of two discs moving over a gradient (deterministic)."""
    import av

    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    background = np.stack([rows / size * 160 + 40, cols / size * 120 + 60, np.full_like(rows, 90)], axis=-1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width, stream.pix_fmt = size, size, "yuv420p"
        for k in range(frames):
            frame = background.copy()
            for centre, radius, colour in (
                ((0.3, 0.2 + 0.6 * k / frames), 0.15, 230),
                ((0.7, 0.8 - 0.5 * k / frames), 0.1, 20),
            ):
                inside = (rows - centre[0] * size) ** 2 + (cols - centre[1] * size) ** 2 < (radius * size) ** 2
                frame[inside] = colour
            picture = av.VideoFrame.from_ndarray(frame.astype(np.uint8), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def video_speed(config: Any) -> dict[str, Any]:
    """Time ``segdino video`` on a synthetic video for each precision and batch size (see the module notes).

    Args:
        config: the :class:`~segdino_monai.tools.benchmark.BenchmarkConfig` (backbone, weights, device, threads,
            sizes: the smallest is the video's, work folder).

    Returns:
        ``{"size", "frames", "rows": [...]}``; a row holds ``precision``, ``batch`` and either ``frames_per_s``
        with ``decode_ms``, ``model_ms``, ``encode_ms`` per frame and ``decode_fraction`` of the wall time, or
        ``skipped`` with the reason.

    Raises:
        InputError: PyAV is not installed.
    """
    try:
        import av  # noqa: F401
    except ImportError as err:
        raise InputError("--video needs PyAV: pip install -e '.[video]'") from err
    from segdino_monai.networks import SegDINO
    from segdino_monai.networks.nets.dinov3_backbone import use_bf16
    from segdino_monai.services.predictor import BundlePredictor
    from segdino_monai.services.video import FrameRange, VideoSegmenter, segment_video

    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    size = min(config.sizes)
    work = Path(config.work_dir) / "video"
    video = synthetic_video(work / "synthetic.mp4", FRAMES, size)
    torch.manual_seed(0)
    checkpoint = SegDINO(backbone=config.backbone, backbone_kwargs=config.backbone_kwargs).save_decoder(
        work / "model.pt"
    )
    rows: list[dict[str, Any]] = []
    try:
        for precision in PRECISIONS:
            if precision == "bfloat16" and not use_bf16("auto", device):
                rows += [{"precision": precision, "batch": b, "skipped": "no native bf16"} for b in BATCHES]
                continue
            overrides = {
                "backbone": config.backbone,
                "network_def#backbone_kwargs": dict(config.backbone_kwargs),
                "backbone_precision": precision,
                "spatial_size": [size, size],
                "device": f"$torch.device({str(device)!r})",
            }
            predictor = BundlePredictor(None, config.weights or "random", checkpoint, "endoscopy", overrides)
            for batch in BATCHES:
                logger.info("segdino video %dx%d, batch %d, %s", size, size, batch, precision)
                frames = VideoSegmenter(predictor, batch)
                out = work / f"out-{precision}-{batch}"
                segment_video(video, out, frames, FrameRange(end=str(batch)), progress=False)  # warm-up
                result = segment_video(video, out, frames, progress=False)
                spent = result.seconds
                row: dict[str, Any] = {"precision": precision, "batch": batch, "frames": result.frames}
                row["frames_per_s"] = result.frames / spent["total"]
                row.update({f"{k}_ms": 1000 * spent[k] / result.frames for k in ("decode", "model", "encode")})
                row["decode_fraction"] = spent["decode"] / spent["total"]
                rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"size": size, "frames": FRAMES, "rows": rows}


def markdown_section(video: dict[str, Any]) -> list[str]:
    """The video section of the benchmark's markdown."""
    lines = [
        "",
        f"segdino video, {video['size']}x{video['size']}, {video['frames']} frames (synthetic H.264; ms per frame):",
        "",
        "| precision | batch | frames/s | decode ms | model ms | encode ms | decode share |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in video["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['precision']} | {r['batch']} | skipped: {r['skipped']} | | | | |")
            continue
        lines.append(
            f"| {r['precision']} | {r['batch']} | {r['frames_per_s']:.2f} | {r['decode_ms']:.2f} | "
            f"{r['model_ms']:.2f} | {r['encode_ms']:.2f} | {100 * r['decode_fraction']:.1f}% |"
        )
    return lines
