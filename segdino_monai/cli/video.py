"""``segdino video``: video files and DICOM cine loops to an overlay video and a per-frame CSV."""

from __future__ import annotations

import argparse

from segdino_monai.cli.options import (
    add_model_options,
    add_progress_option,
    add_set_option,
    distributed_overrides,
    load_predictor,
    serving_overrides,
)

__all__ = ["add_parser", "run"]


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the video sub-command."""
    video = commands.add_parser(
        "video",
        help="segment video files and DICOM cine loops: an overlay video and a per-frame CSV per input",
        description="Run the bundle's inference on every frame of each video (.mp4, .avi, .mkv, .mov) or multi-frame "
        "DICOM (cine loop; folders searched recursively) in batches, streaming, and write OUT/<stem>/overlay.mp4 "
        "(H.264, same frame rate and size; a DICOM's from its Frame Time, Frame Time Vector, Cine Rate or "
        "Recommended Display Frame Rate, else 25/s) and frames.csv (frame, time_s, area_pixels, area_mm2 where the "
        "pixel size is known (DICOM), mean_probability, mask_empty). Temporal smoothing is on "
        "(--set temporal_smoothing=false turns it off). A bad or truncated input is reported with the frame reached, "
        "its outputs keep the frames before it, and the next input follows (exit 1).",
    )
    video.add_argument("inputs", nargs="+", help="video files, multi-frame DICOM files or folders")
    video.add_argument("-o", "--output", required=True, help="output folder")
    add_model_options(video)
    video.add_argument("--every", type=int, default=1, metavar="N", help="segment every N-th frame (default 1)")
    video.add_argument(
        "--start", default="0", help="first frame: a frame number from 0 (30) or seconds (1.5s); default 0"
    )
    video.add_argument("--end", help="end (excluded): a frame number (90) or seconds (3s); default the last frame")
    video.add_argument("--batch-size", type=int, default=8, help="frames per network call (default 8)")
    video.add_argument(
        "--masks", choices=["png", "video"], help="also write masks/frame_NNNNNN.png or masks.mkv (lossless FFV1)"
    )
    add_progress_option(video)
    add_set_option(video)
    video.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Segment the videos; exit 1 when an input was bad or truncated."""
    from segdino_monai.services.dicom_inputs import check_output
    from segdino_monai.services.video import FrameRange, VideoSegmenter, find_videos, run_video

    overrides = serving_overrides(args)
    frames = FrameRange(args.start, args.end, args.every)  # bad options stop the command before the model loads
    check_output(args.output, args.inputs)
    find_videos(args.inputs)
    overrides.update(distributed_overrides())  # under torchrun: the inputs are dealt out between the processes
    segmenter = load_predictor(args, overrides)
    _, errors = run_video(
        args.inputs, args.output, VideoSegmenter(segmenter, args.batch_size), frames, args.masks, not args.no_progress
    )
    return 1 if errors else 0
