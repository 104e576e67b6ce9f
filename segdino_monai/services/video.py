"""Videos and cine loops in, overlay video and per-frame CSV out: ``segdino video``.

Inputs are video files (``.mp4``, ``.avi``, ``.mkv``, ``.mov``, decoded with PyAV, FFmpeg in its wheel) and
multi-frame DICOM files (ultrasound cine loops, video endoscopy: :class:`~segdino_monai.services.cine.DicomCine`, their
frame rate from the Cine module, see there). Frames are segmented by the bundle's ``inference.json`` pipeline as
:class:`~segdino_monai.services.predictor.BundlePredictor` runs it. A DICOM frame is read by the config's own ``load``
steps (the package's DICOM reader, one frame per call), so it carries what ``segdino dicom`` sees (the ultrasound
region that the ultrasound config crops, the pixel size). A decoded video frame is not a file, so it enters the
config's preprocessing after its ``load`` steps, as the ``(3, H, W)`` float32 RGB MetaTensor on 0..255 that the
loader gives for a picture (same meta data: spatial shape, channel dimension, source name). The config's inferer,
network and postprocessing (without its file writer) follow. Frames are segmented in batches of ``batch_size``
(preprocessing and postprocessing per frame, one network call per batch) and streamed: the decoder, the batch and
the encoders are all that is held in memory, never the whole video.

Temporal smoothing (the config's ``temporal_smoothing``, on by default) sees each frame's position as
``(file, frame number)``: it runs over consecutive frames and is reset for each input; with ``every > 1`` the
frames segmented are not consecutive, so each is segmented alone (no smoothing).

Per input, ``OUT/<stem>/`` holds ``overlay.mp4`` (H.264, the source's frame rate and size, one frame per segmented
frame), ``frames.csv`` (``frame`` from 0, for DICOM the frame number minus 1; ``time_s`` the frame's presentation
time; ``area_pixels`` of the foreground; ``area_mm2``, the same in mm2 where the pixel size is known (DICOM:
PixelSpacing, ImagerPixelSpacing or the ultrasound region, as ``segdino dicom`` reports areas), empty for videos;
``mean_probability`` the mean foreground probability inside the mask, or over the whole frame when the mask is
empty; ``mask_empty``), optionally ``masks/frame_NNNNNN.png`` (``masks="png"``) or ``masks.mkv`` (``masks="video"``:
FFV1, lossless grey levels as the PNG masks). Every file is written under a temporary name and renamed when
complete, so a rerun overwrites whole files only. A file that fails to decode part way (truncated, corrupt) raises
:class:`~segdino_monai.services.video_file.VideoDecodeError` naming the file and the frame reached, after the
outputs of the frames decoded up to there are completed and renamed (the CSV ends with the last frame segmented; when
no frame was segmented, nothing is written). ``OUT/summary.json`` lists the inputs segmented and those that failed;
under ``torchrun`` the inputs are dealt out between the processes and one summary is written (:func:`run_video`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.io.dicom_cine import CineFrameError
from segdino_monai.io.dicom_reader import DICOM_SUFFIXES, is_dicom_file, is_non_image_sop_class, read_header
from segdino_monai.services.cine import DicomCine
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.services.video_file import VideoDecodeError, VideoFile
from segdino_monai.services.video_outputs import VideoOutputs
from segdino_monai.utils.atomic import write_json
from segdino_monai.utils.distributed import rank_and_world
from segdino_monai.utils.errors import InputError
from segdino_monai.utils.naming import file_stem

__all__ = ["VIDEO_SUFFIXES", "FrameRange", "VideoSegmenter", "find_videos", "run_video", "segment_video"]

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


@dataclass(frozen=True)
class FrameRange:
    """Which frames to segment: frame numbers from 0, ``start`` included, ``end`` excluded, every ``every``-th.

    ``start``/``end`` are frame numbers (``--start 30``) or, given with an ``s`` (``--start 1.5s``), seconds
    converted with the video's frame rate (frame ``round(seconds * fps)``).
    """

    start: str = "0"
    end: str | None = None
    every: int = 1

    def __post_init__(self) -> None:
        if int(self.every) < 1:
            raise InputError(f"--every {self.every}: segment every N-th frame, N >= 1")
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and _frame_or_seconds(value, 1.0, f"--{name}") < 0:
                raise InputError(f"--{name} {value}: a frame number or time in seconds >= 0")

    def bounds(self, fps: float) -> tuple[int, int | None]:
        """``(first frame, end frame or None)`` at ``fps`` frames per second."""
        first = _frame_or_seconds(self.start, fps, "--start")
        last = None if self.end is None else _frame_or_seconds(self.end, fps, "--end")
        return first, last


def _frame_or_seconds(value: str, fps: float, name: str) -> int:
    text = str(value).strip().lower()
    try:
        return round(float(text[:-1]) * fps) if text.endswith("s") else int(text)
    except ValueError as err:
        raise InputError(f"{name} {value}: a frame number (30) or seconds (1.5s)") from err


def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """The inputs to segment: files as given, folders searched recursively for videos and multi-frame DICOM.

    In folders, videos are found by their suffix (:data:`VIDEO_SUFFIXES`) and DICOM files by theirs (``.dcm``,
    ``.dicom``) or their ``DICM`` marker; DICOM files of one frame (``segdino dicom`` segments them) and DICOM objects
    that are no image (SEG, SR, ...: ``segdino dicom``'s own outputs) are passed over, unreadable ones kept (they are
    reported when segmented).

    Raises:
        InputError: an input is missing, a DICOM file given by name has one frame or is no image, or a folder holds
            no video and no multi-frame DICOM.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError(f"Input not found: {path} (check the path)")
        if path.is_file():
            count = _dicom_frames(path) if _is_dicom(path) else None
            if count == 1:
                raise InputError(f"{path}: a single-frame DICOM image, not a cine loop; segment it with segdino dicom")
            if count == 0:
                raise InputError(f"{path}: a DICOM object that is no image (a SEG, SR, ...): nothing to segment")
            found.append(path)
            continue
        files = [p for p in sorted(path.rglob("*")) if p.is_file() and not p.name.startswith(".")]
        videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES or _is_cine(p)]
        if not videos:
            raise InputError(
                f"No video ({', '.join(VIDEO_SUFFIXES)}) and no multi-frame DICOM in input folder {path}; single-frame "
                "DICOM images are segmented by segdino dicom"
            )
        found.extend(videos)
    return list(dict.fromkeys(found))


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)


def _is_cine(path: Path) -> bool:
    """Whether a file found in a folder is a multi-frame DICOM image (or a DICOM file too damaged to tell)."""
    return _is_dicom(path) and _dicom_frames(path) not in (0, 1)


def _dicom_frames(path: Path) -> int | None:
    """A DICOM image's number of frames, 0 for a DICOM object that is no image (SEG, SR, ...).

    ``None`` when its header cannot be read (the file is reported when segmented).
    """
    try:
        header = read_header(path)
        if is_non_image_sop_class(header.get("SOPClassUID", "")):
            return 0
        return int(header.get("NumberOfFrames", 1) or 1)
    except (InputError, TypeError, ValueError):
        return None


class VideoSegmenter:
    """The bundle's one predictor (:class:`~segdino_monai.services.predictor.BundlePredictor`) on batches of frames.

    Args:
        predictor: the loaded bundle pipeline.
        batch_size: frames per network call.
    """

    def __init__(self, predictor: BundlePredictor, batch_size: int = 8) -> None:
        if int(batch_size) < 1:
            raise InputError(f"--batch-size {batch_size}: frames per batch, >= 1")
        self.predictor = predictor
        self.batch_size = int(batch_size)

    def reset(self) -> None:
        """Restart the temporal smoothing of the config's postprocessing (a new video)."""
        self.predictor.reset()

    def segment(self, items: Sequence[dict[str, Any]]) -> list[tuple[np.ndarray, float]]:
        """``(mask (H, W) uint8, mean foreground probability)`` of each frame as the config's ``load`` steps give it.

        The mean is over the mask, or over the whole frame when the mask is empty.
        """
        results = []
        for mask, probabilities in self.predictor.predict(items, probabilities=True):
            foreground = probabilities[0] if probabilities.shape[0] == 1 else 1.0 - probabilities[0]
            inside = foreground[mask > 0] if mask.any() else foreground
            results.append((mask, float(inside.mean())))
        return results


@dataclass
class VideoResult:
    """What one input gave: frames segmented, the output folder and files, and the error that stopped it, if any."""

    source: str
    frames: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    folder: str = ""
    #: wall seconds: ``decode`` (reading and decoding the frames), ``model`` (preprocessing, network and
    #: postprocessing), ``encode`` (overlays, video and mask encoders, CSV) and ``total``.
    seconds: dict[str, float] = field(default_factory=lambda: {"decode": 0.0, "model": 0.0, "encode": 0.0})
    error: str | None = None


def _timed(items: Iterator[Any], seconds: dict[str, float], key: str) -> Iterator[Any]:
    """``items`` as they come, the time spent producing them added to ``seconds[key]``."""
    iterator = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            seconds[key] += time.perf_counter() - start
        yield item


def _open_source(path: Path, segmenter: VideoSegmenter) -> Any:
    """The frame source of a file: a multi-frame DICOM (``DicomCine``) or a video file (``VideoFile``)."""
    if _is_dicom(path):
        return DicomCine(path, segmenter.predictor)
    return VideoFile(path)


def segment_video(
    path: str | Path,
    folder: str | Path,
    segmenter: VideoSegmenter,
    frames: FrameRange | None = None,
    masks: str | None = None,
    progress: bool = True,
) -> VideoResult:
    """Segment one video into ``folder`` (see the module notes); frames/s are logged.

    Args:
        path: the video file.
        folder: its output folder (created).
        segmenter: the pipeline.
        frames: which frames (default all).
        masks: ``None``, ``"png"`` or ``"video"``.
        progress: show a progress bar.

    Returns:
        The frames segmented and the outputs.

    Raises:
        InputError: the file cannot be opened as a video, or no frame was segmented (nothing written).
        VideoDecodeError: the video stopped decoding part way, raised once the outputs of the frames before it are
            complete and renamed (the error names the file and the frame reached).
    """
    from tqdm import tqdm

    path, folder = Path(path), Path(folder)
    frames = frames or FrameRange()
    if masks not in (None, "png", "video"):
        raise InputError(f"--masks {masks}: choose png or video")
    source = _open_source(path, segmenter)
    result = VideoResult(str(path.resolve()), folder=str(folder))
    first, end = frames.bounds(float(source.rate))
    try:
        outputs = VideoOutputs(folder, source.size, source.rate, masks)
    except BaseException:
        source.close()
        raise
    total = None
    if source.total is not None:
        total = len(range(first, source.total if end is None else min(end, source.total), frames.every))
    bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress)
    began = time.perf_counter()
    segmenter.reset()
    batch: list[tuple[int, float, np.ndarray, dict[str, Any]]] = []
    spent = result.seconds

    def flush() -> None:
        start = time.perf_counter()
        results = segmenter.segment([data for *_, data in batch])
        encode = time.perf_counter()
        for (number, seconds, rgb, data), (mask, probability) in zip(batch, results, strict=True):
            spacing = data["image"].meta.get("pixel_size_mm")  # DICOM: the reader's, as segdino dicom's areas
            outputs.write(number, seconds, rgb, mask, probability, spacing)
        spent["model"] += encode - start
        spent["encode"] += time.perf_counter() - encode
        result.frames += len(batch)
        bar.update(len(batch))
        batch.clear()

    try:
        try:
            for item in _timed(source.frames(first, end, frames.every), spent, "decode"):
                batch.append(item)
                if len(batch) == segmenter.batch_size:
                    flush()
        except (VideoDecodeError, CineFrameError) as err:  # the frames before it are kept
            result.error = str(err)
        if batch:
            flush()
        if not result.frames:  # an empty video file is no output: nothing is written
            raise InputError(
                result.error
                or f"{path}: no frame from --start {frames.start} to --end {frames.end or 'the last'} "
                f"(every {frames.every}); choose frames within the video"
            )
        start = time.perf_counter()
        result.outputs = outputs.close()  # the encoders' buffered frames are encoded here
        spent["encode"] += time.perf_counter() - start
    except BaseException:
        outputs.discard()
        raise
    finally:
        bar.close()
        source.close()
    spent["total"] = elapsed = time.perf_counter() - began
    logger.info(
        "%s: %d frames segmented in %.1f s (%.1f frames/s; decode %.1f s, model %.1f s, encode %.1f s) into %s",
        path,
        result.frames,
        elapsed,
        result.frames / elapsed if elapsed > 0 else 0.0,
        spent["decode"],
        spent["model"],
        spent["encode"],
        folder,
    )
    if result.error:
        raise VideoDecodeError(f"{result.error}; the outputs in {folder} hold the {result.frames} frames segmented")
    return result


def run_video(
    inputs: Sequence[str | Path],
    output: str | Path,
    segmenter: VideoSegmenter,
    frames: FrameRange | None = None,
    masks: str | None = None,
    progress: bool = True,
) -> tuple[list[VideoResult], list[str]]:
    """Segment every input into ``output/<stem>/``; a bad file is reported and skipped; ``output/summary.json``.

    The summary lists, sorted by file, the inputs ``segmented`` (file, output folder, frames, output files) and
    those ``failed`` (file, output folder, reason; a file that stopped part way keeps the outputs of the frames
    before it), with their ``counts``.

    Under ``torchrun`` (``torch.distributed`` initialised) the inputs are dealt out as ``segdino dicom`` deals its
    files: process ``r`` segments every ``world_size``-th input from its ``r``-th, every process names all output
    folders alike (each has one writer), the results are gathered, and process 0 writes the one summary.

    Returns:
        The results of the inputs done, and the error of each input that failed or stopped part way (of every
        process under ``torchrun``, so that each returns the same exit status).
    """
    output = Path(output)
    rank, world = rank_and_world()
    done: list[VideoResult] = []
    failed: list[dict[str, str]] = []
    names: set[str] = set()
    for index, path in enumerate(find_videos(inputs)):
        name = file_stem(path)
        while name in names:  # same stem in two folders
            name += "_"
        names.add(name)
        if index % world != rank:  # another process's input: only its name, as that process chooses it
            continue
        try:
            done.append(segment_video(path, output / name, segmenter, frames, masks, progress))
        except InputError as err:
            logger.error("%s", err)
            failed.append({"file": str(path.resolve()), "output": str(output / name), "reason": str(err)})
    if world > 1:
        import torch.distributed as dist

        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, (done, failed))
        done = sorted((r for part, _ in parts for r in part), key=lambda r: r.source)
        failed = sorted((f for _, part in parts for f in part), key=lambda f: f["file"])
    if rank == 0:
        segmented = [{"file": r.source, "output": r.folder, "frames": r.frames, "outputs": r.outputs} for r in done]
        summary = {"counts": {"segmented": len(done), "failed": len(failed)}, "segmented": segmented, "failed": failed}
        output.mkdir(parents=True, exist_ok=True)
        write_json(summary, output / "summary.json")
        logger.info(
            "segdino video: %d segmented, %d failed; summary in %s", len(done), len(failed), output / "summary.json"
        )
    return done, [f["reason"] for f in failed]
