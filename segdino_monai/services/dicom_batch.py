"""DICOM in, segmentation out: run the bundle's inference on every image instance of a set of files and folders.

Every image is segmented by the bundle's ``inference.json`` pipeline as it is, loaded once
(:class:`~segdino_monai.services.predictor.BundlePredictor`): its loader (the package's reader, which reads DICOM),
preprocessing, network, inferer and postprocessing, with the modality's config file and the overrides merged; only
the bundle's file writer is left out, for the writers here. Predictions are inverted to the source grid (``Invertd``
on probabilities, then the threshold), so every output is pixel-aligned with the source.

This module is the run loop: the inputs are found and the output folder checked by
:mod:`~segdino_monai.services.dicom_inputs`, each instance's outputs (``OUT/<SOPInstanceUID or file stem>/``: SEG,
PNG, NIfTI, report, optional SC and SR) are written by :mod:`~segdino_monai.services.dicom_outputs` into a staging
folder that appears whole when complete (:mod:`~segdino_monai.services.staging`, which also removes the leftovers of
interrupted runs). Inputs are only read. ``OUT/summary.json`` lists what was processed, what was skipped and why,
merged across the processes under ``torchrun``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segdino_monai.dicom.seg import DEFAULT_TASK, SegOptions
from segdino_monai.io.dicom_reader import frame_numbers
from segdino_monai.services.dicom_inputs import (
    REPORT,
    check_frames,
    check_output,
    collect_inputs,
    dicom_header,
    instance_name,
    report_source,
)
from segdino_monai.services.dicom_outputs import write_instance
from segdino_monai.services.predictor import BundlePredictor
from segdino_monai.services.staging import clean_leftovers, publish, staging_folder
from segdino_monai.utils.atomic import write_json
from segdino_monai.utils.distributed import rank_and_world
from segdino_monai.utils.errors import InputError, input_error_message

__all__ = ["RunSummary", "run_dicom"]

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: per input file, its outcome.

    ``processed``: SEG written; ``fallback``: no SEG (reason given), PNG/NIfTI only, with per-frame PNG masks and a
    ``frames.json`` sidecar for multi-frame sources (some frames only); ``done``: skipped
    because its outputs exist; ``skipped``: bad input (with reason); ``failed``: readable input whose processing
    failed (with reason).
    """

    processed: list[dict[str, Any]] = field(default_factory=list)
    fallback: list[dict[str, Any]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    interrupted: str | None = None

    @property
    def ok(self) -> bool:
        """True when nothing was skipped or failed and the run was not interrupted."""
        return not (self.skipped or self.failed or self.interrupted)

    def as_dict(self) -> dict[str, Any]:
        """The summary as written to ``summary.json`` (``interrupted`` only when the run was)."""
        counts = {k: len(getattr(self, k)) for k in ("processed", "fallback", "done", "skipped", "failed")}
        out: dict[str, Any] = {"counts": counts, **{k: getattr(self, k) for k in counts}}
        if self.interrupted:
            out["interrupted"] = self.interrupted
        return out


def run_dicom(
    inputs: Sequence[str | Path],
    output: str | Path,
    segmenter: BundlePredictor,
    overwrite: bool = False,
    frames: Sequence[int] | None = None,
    seg_options: SegOptions | None = None,
    progress: bool = True,
) -> RunSummary:
    """Segment every image instance found in ``inputs`` and write its outputs under ``output``.

    Leftovers of an interrupted earlier run (staging folders, temporary files) are removed first. On Ctrl-C (or a
    SIGTERM turned into ``KeyboardInterrupt``, see :func:`~segdino_monai.services.staging.sigterm_as_interrupt`) the
    instance being written is discarded, ``summary.json`` records what was finished and the interruption, and the
    ``KeyboardInterrupt`` propagates; a rerun finishes the work.

    Args:
        inputs: DICOM (or NIfTI/MHA/NRRD) files and folders (searched recursively), DICOMDIR files.
        output: the output folder (created); not an input folder nor inside one.
        segmenter: the network and its transforms (:class:`BundlePredictor`).
        overwrite: redo instances whose outputs exist (default: skip them).
        frames: DICOM frame numbers (from 1) to segment in multi-frame files (default all); a multi-frame file
            without one of them is skipped with the reason; single-frame images are segmented whole.
        seg_options: SEG descriptions; default: the segmenter's modality's task.
        progress: show a progress bar.

    Under ``torchrun`` (``torch.distributed`` initialised) the files are dealt out: process ``r`` segments every
    ``world_size``-th file from its rank, every process names all outputs alike (each output folder has one
    writer), and process 0 writes the one ``summary.json`` of them all; an interrupted process writes its part to
    ``summary-rank<r>.json`` instead (a rerun finishes the work and replaces them by ``summary.json``).

    Returns:
        The :class:`RunSummary` (of every process), also written to ``output/summary.json``.

    Raises:
        InputError: when the whole run cannot proceed: an input is missing, a folder holds nothing to segment, the
            output folder is an input folder, a file or not writable, frame numbers are below 1.
    """
    from tqdm import tqdm

    frames = check_frames(frames)
    output = check_output(output, inputs)
    files = collect_inputs(inputs, exclude=[output])
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"-o {output}: cannot create it ({err.strerror or err}); choose a writable folder") from err
    clean_leftovers(output)
    options = seg_options or SegOptions(task=DEFAULT_TASK.get(segmenter.modality, "lesion"))
    if options.model_name == "SegDINO":  # the default: name the backbone and checkpoint
        options.model_name = segmenter.model_name
    options.model_id = options.model_id or segmenter.model_id  # the SEGs' UIDs derive from it (writer.seg_uids)
    labels = options.labels(max(1, segmenter.num_classes - 1))
    summary = RunSummary()
    taken: set[str] = set()
    rank, world = rank_and_world()
    try:
        for index, (path, dicomdir) in enumerate(tqdm(files, desc="segdino dicom", unit="file", disable=not progress)):
            if dicomdir is not None and not path.exists():
                if index % world == rank:
                    reason = f"file not found (referenced by {dicomdir})"
                    summary.skipped.append({"file": str(path), "reason": reason})
                    logger.warning("skipped %s: %s", path, reason)
                continue
            if index % world != rank:  # another process's file: only its output name, as that process chooses it
                taken.add(instance_name(path, dicom_header(path), output, taken))
                continue
            _run_one(path, output, segmenter, overwrite, frames, options, labels, summary, taken)
    except KeyboardInterrupt as err:
        summary.interrupted = str(err) or "interrupted (Ctrl-C)"
        raise
    finally:
        if summary.interrupted is None:  # every process is done: one summary of them all, written by the first
            summary = _merged(summary, world)
            if rank == 0:
                write_json(summary.as_dict(), output / "summary.json")
                for part in output.glob("summary-rank*.json"):  # of an interrupted run, now finished
                    part.unlink(missing_ok=True)
        else:  # each process records its part; a rerun finishes the work and writes the whole summary
            write_json(summary.as_dict(), output / ("summary.json" if world == 1 else f"summary-rank{rank}.json"))
        if rank == 0 or summary.interrupted is not None:
            _log_summary(summary, output)
    return summary


def _merged(summary: RunSummary, world: int) -> RunSummary:
    """The summaries of every process in one, each list sorted by file (this process's alone outside ``torchrun``)."""
    if world == 1:
        return summary
    import torch.distributed as dist

    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, summary)
    merged = RunSummary()
    for kind in ("processed", "fallback", "done", "skipped", "failed"):
        entries = [e for part in parts for e in getattr(part, kind)]
        setattr(merged, kind, sorted(entries, key=lambda e: e["file"]))
    return merged


def _run_one(
    path: Path,
    output: Path,
    segmenter: BundlePredictor,
    overwrite: bool,
    frames: list[int] | None,
    options: SegOptions,
    labels: list[str],
    summary: RunSummary,
    taken: set[str],
) -> None:
    """Segment one file into ``output/<name>/`` (built in a staging folder, then renamed) and record the outcome."""
    header = dicom_header(path)
    name = instance_name(path, header, output, taken)
    taken.add(name)
    target = output / name
    entry: dict[str, Any] = {"file": str(path), "output": str(target)}
    if not overwrite and report_source(target / REPORT) == str(path.resolve()):
        summary.done.append(entry)
        return
    try:
        numbers = _frames_for(path, header, frames)
        segmented = [(number or 1, *segmenter.segment(path, number)) for number in numbers]
    except Exception as err:  # a file that does not read is skipped with its reason; anything else failed
        reason = input_error_message(err)
        if reason is None:
            summary.failed.append({"file": str(path), "reason": f"{type(err).__name__}: {err}"})
            logger.error("failed %s: %s", path, err)
        else:
            summary.skipped.append({"file": str(path), "reason": reason.removeprefix(f"{path}: ")})
            logger.warning("skipped %s", reason)
        return
    staging = staging_folder(output, name)
    try:
        outcome, report = write_instance(path, segmented, staging, options, labels)
        publish(staging, target)
    except Exception as err:  # on purpose: one file's failure is reported in the summary and the run goes on
        shutil.rmtree(staging, ignore_errors=True)
        summary.failed.append({"file": str(path), "reason": f"{type(err).__name__}: {err}"})
        logger.error("failed %s: %s", path, err)
        return
    except BaseException:  # Ctrl-C, SIGTERM: nothing half-written stays behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    entry.update({"SOPInstanceUID": report.get("SOPInstanceUID") or None, "frames": len(segmented)})
    if outcome == "fallback":
        entry["reason"] = report["seg_not_written"]
    if report.get("seg_repairs"):
        entry["seg_repairs"] = report["seg_repairs"]
    getattr(summary, outcome).append(entry)


def _frames_for(path: Path, header: Any | None, frames: list[int] | None) -> list[int | None]:
    """The frames to segment: the chosen ``frames`` (default all) of a multi-frame DICOM file, else ``[None]``.

    Raises:
        DicomReadError: a chosen frame is not in the file.
    """
    if header is None or int(header.get("NumberOfFrames", 1) or 1) == 1:
        return [None]
    return list(frame_numbers(header, frames, path))


def _log_summary(summary: RunSummary, output: Path) -> None:
    counts = summary.as_dict()["counts"]
    logger.info(
        "segdino dicom: %d processed (SEG), %d fallback (no SEG: PNG/NIfTI; frames.json for some frames of a cine), "
        "%d already done, %d skipped, %d failed; summary in %s",
        counts["processed"],
        counts["fallback"],
        counts["done"],
        counts["skipped"],
        counts["failed"],
        output / "summary.json",
    )
    for item in summary.skipped + summary.failed:
        logger.warning("  %s: %s", item["file"], item["reason"])
