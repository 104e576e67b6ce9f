"""The outputs of one segmented DICOM (or NIfTI/MHA/NRRD) instance, written into its (staging) folder.

``seg.dcm``, ``mask.png`` and ``overlay.png`` (per frame ``frame_NNNN_mask.png`` and ``frame_NNNN_overlay.png`` for
multi-frame sources), ``mask.nii.gz`` and ``report.json`` (written last); with ``SegOptions.also_sc`` a Secondary
Capture overlay ``sc.dcm`` (``sc_NNNN.dcm`` per frame of a multi-frame source), with ``SegOptions.also_sr`` a TID 1500
SR ``sr.dcm`` with each segment's area and maximum diameter in mm. When only some frames of a multi-frame source are
segmented, a ``frames.json`` sidecar replaces ``seg.dcm``; a source without the UIDs a SEG references gets everything
but ``seg.dcm``, with the reason.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import MetaTensor

from segdino_monai.dicom.seg import SegOptions, seg_geometry, write_seg
from segdino_monai.dicom.source import SegUnsupportedError, prepare_seg_source
from segdino_monai.io.dicom_reader import dcmread, is_itk_file
from segdino_monai.io.masks import segment_areas
from segdino_monai.io.writers import write_nifti, write_overlay, write_png_mask
from segdino_monai.services.dicom_inputs import REPORT
from segdino_monai.utils.atomic import write_json

__all__ = ["write_instance"]

logger = logging.getLogger(__name__)


def _source_info(path: Path, image: MetaTensor, numbers: list[int]) -> dict[str, Any]:
    """What the report says of the source: its UIDs, size, pixel size and the frames segmented (``numbers``)."""
    meta = image.meta
    keys = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")
    return {
        "source_file": str(path.resolve()),
        **{k: meta.get(k) or None for k in keys},  # None: the source has no such attribute
        "number_of_frames": meta["number_of_frames"],
        "frame_numbers": numbers,
        "original_size": list(meta["original_size"]),
        "pixel_size_mm": meta.get("pixel_size_mm"),
        "pixel_size_source": meta.get("pixel_size_source"),
        "ultrasound_region": meta.get("ultrasound_region"),
        "photometric_interpretation": meta.get("photometric_interpretation"),
        "decoder": meta["decoder"],
    }


def write_instance(
    path: Path,
    segmented: list[tuple[int, MetaTensor, np.ndarray]],
    folder: Path,
    options: SegOptions,
    labels: list,
) -> tuple[str, dict[str, Any]]:
    """Write the outputs of one instance into ``folder``; returns the outcome (processed/fallback) and its report.

    Args:
        path: the source file.
        segmented: ``(frame number, source frame (3, H, W) on 0..255, mask)`` of each segmented frame.
        folder: the (staging) output folder.
        options: SEG descriptions.
        labels: the segment labels.
    """
    masks = [(number, mask) for number, _, mask in segmented]
    frames = [(number, frame) for number, frame, _ in segmented]
    info = _source_info(path, frames[0][1], [number for number, _ in masks])
    spacing = info["pixel_size_mm"]
    stack = np.stack([m for _, m in masks])
    single = int(info["number_of_frames"]) == 1
    report: dict[str, Any] = {**info, "outputs": {}, "segments": []}
    is_dicom = not is_itk_file(path)
    whole = len(masks) == int(info["number_of_frames"])
    seg_note = None
    if is_dicom and whole:
        try:
            source, repairs = prepare_seg_source(dcmread(path))
            write_seg(source, stack[0] if single else stack, folder / "seg.dcm", options, len(labels))
            report["outputs"]["seg"] = "seg.dcm"
            report["seg_repairs"] = repairs  # what the SEG has that the source lacked or had wrong (source untouched)
            # the SEG's Pixel Measures: the source's pixel size, or 1\1 with the reason (viewers need one)
            report["seg_geometry"] = seg_geometry(source).as_report()
        except SegUnsupportedError as err:
            seg_note = str(err)
    elif is_dicom:
        seg_note = "only some frames were segmented; a SEG would claim the others are empty"
    else:
        seg_note = "not a DICOM source"
    if options.also_sc or options.also_sr:
        _write_sc_sr(path, segmented, folder, options, labels, spacing, report, single)
    if single:
        write_png_mask(stack[0], folder / "mask.png")
        write_overlay(np.moveaxis(frames[0][1].numpy(), 0, -1), stack[0], folder / "overlay.png")
        report["outputs"].update({"mask_png": "mask.png", "overlay_png": "overlay.png"})
    else:
        per_frame = []
        for (number, frame), (_, mask) in zip(frames, masks, strict=True):
            write_png_mask(mask, folder / f"frame_{number:04d}_mask.png")
            write_overlay(np.moveaxis(frame.numpy(), 0, -1), mask, folder / f"frame_{number:04d}_overlay.png")
            per_frame.append(
                {
                    "frame_number": number,
                    "mask_png": f"frame_{number:04d}_mask.png",
                    "overlay_png": f"frame_{number:04d}_overlay.png",
                }
            )
        report["outputs"]["frames"] = per_frame
    write_nifti(stack[0] if single else stack, folder / "mask.nii.gz", spacing)
    report["outputs"]["nifti"] = "mask.nii.gz"
    for number, mask in masks:
        report["segments"].append({"frame_number": number, "areas": segment_areas(mask, labels, spacing)})
    report["area_unit"] = "mm2" if spacing else "pixels (pixel size unknown)"
    outcome = "processed"
    if seg_note is not None:
        report["seg_not_written"] = seg_note
        outcome = "fallback"
        if not single:
            sidecar = {
                k: info.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
            }
            sidecar.update(
                {
                    "source_file": info["source_file"],
                    "number_of_frames": info["number_of_frames"],
                    "reason": seg_note,
                    "frames": report["outputs"]["frames"],
                }
            )
            write_json(sidecar, folder / "frames.json")
            report["outputs"]["sidecar"] = "frames.json"
    write_json(report, folder / REPORT)  # written last: its presence marks the folder as complete
    return outcome, report


def _write_sc_sr(
    path: Path,
    segmented: list[tuple[int, MetaTensor, np.ndarray]],
    folder: Path,
    options: SegOptions,
    labels: list,
    spacing: list[float] | None,
    report: dict[str, Any],
    single: bool,
) -> None:
    """Write the Secondary Capture overlays and the SR measurement report asked for in ``options`` into ``folder``.

    What is written is listed in ``report["outputs"]`` (``"sc"``: ``"sc.dcm"``, or the list of ``sc_NNNN.dcm`` of a
    multi-frame source; ``"sr"``: ``"sr.dcm"``); what cannot be, with the reason in ``sc_not_written`` or
    ``sr_not_written``: the SC needs a DICOM source with its study and instance UIDs, the SR also the BINARY SEG it
    references (a LABELMAP frame holds every segment, and a frame reference cannot name one) and the pixel size (no
    measurement in mm without it).
    """
    from segdino_monai.dicom.sc import write_sc
    from segdino_monai.dicom.sr import write_sr

    notes: dict[str, str] = {}
    source = seg_uid = None
    if is_itk_file(path):
        notes = {"sc": "not a DICOM source", "sr": "not a DICOM source"}
    else:
        try:
            source, _ = prepare_seg_source(dcmread(path))
        except SegUnsupportedError as err:
            notes = {"sc": str(err), "sr": str(err)}
    if "seg" in report["outputs"]:
        import pydicom

        seg_uid = str(pydicom.dcmread(folder / "seg.dcm", stop_before_pixels=True).SOPInstanceUID)
    if options.also_sc and source is not None:
        frames = [(None if single else n, np.moveaxis(frame.numpy(), 0, -1), mask) for n, frame, mask in segmented]
        names = write_sc(
            source,
            frames,
            folder,
            seg_uid,
            options.series_number + 1,
            f"{options.series_description} overlay",
            options.manufacturer,
            options.spec().label,
        )
        report["outputs"]["sc"] = names[0] if single else names
    if options.also_sr and source is not None:
        if seg_uid is None:
            notes["sr"] = "no SEG was written for the SR to reference"
        elif options.segmentation_type.upper() != "BINARY":
            notes["sr"] = "the SR references one segment per SEG frame: a BINARY SEG (without --labelmap)"
        elif not spacing:
            notes["sr"] = (
                "the pixel size is unknown (no PixelSpacing, ImagerPixelSpacing or calibrated ultrasound region): "
                "no measurement in mm"
            )
        else:
            masks = [(None if single else n, mask) for n, _, mask in segmented]
            sr_path, description = folder / "sr.dcm", f"{options.series_description} measurements"
            write_sr(source, folder / "seg.dcm", masks, spacing, sr_path, options, len(labels),
                     options.series_number + 2, description)  # fmt: skip
            report["outputs"]["sr"] = "sr.dcm"
    for kind, wanted in (("sc", options.also_sc), ("sr", options.also_sr)):
        if wanted and kind in notes:
            report[f"{kind}_not_written"] = notes[kind]
            logger.warning("%s: no %s written: %s", path, kind.upper(), notes[kind])
