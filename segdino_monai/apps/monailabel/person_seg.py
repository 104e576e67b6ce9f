"""A DICOM SEG that a person made, read as the final label of the image it references (pydicom only).

Used by the MONAI Label app's DICOMweb datastore (``lib/dicomweb.py``), which runs under pydicom 2.4 without
highdicom: only pydicom and NumPy here, and only pixels are read, never geometry (OHIF writes a one-valued
PixelSpacing that a geometry reader refuses).

A person's SEG (:func:`made_by_person`): a segment whose SegmentAlgorithmType is ``MANUAL`` (OHIF's Brush) or
``SEMIAUTOMATIC`` (this app's own final labels), or a SEG of another creator than segdino-monai with no ``AUTOMATIC``
segment. The model's SEGs (``segdino dicom``: Manufacturer segdino-monai, AUTOMATIC) never are.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["OWN_MANUFACTURER", "label_from_seg", "made_by_person", "newest_key", "referenced_series"]

#: Manufacturer of everything segdino-monai writes (as :data:`segdino_monai.services.dicomweb.OWN_MANUFACTURER`)
OWN_MANUFACTURER = "segdino-monai"
PERSON_ALGORITHMS = frozenset({"MANUAL", "SEMIAUTOMATIC"})


def _algorithm_types(seg: Any) -> set[str]:
    return {str(item.get("SegmentAlgorithmType", "") or "").upper() for item in seg.get("SegmentSequence") or []}


def made_by_person(seg: Any) -> bool:
    """Whether the SEG (a dataset, pixels not needed) is a person's label rather than a model's output."""
    types = _algorithm_types(seg)
    if types & PERSON_ALGORITHMS:
        return True
    return str(seg.get("Manufacturer", "") or "") != OWN_MANUFACTURER and "AUTOMATIC" not in types


def referenced_series(seg: Any) -> set[str]:
    """The SeriesInstanceUIDs the SEG's ReferencedSeriesSequence names."""
    return {
        str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence") or [] if "SeriesInstanceUID" in item
    }


def _digits(value: Any, width: int) -> str:
    text = re.sub(r"[^0-9.]", "", str(value or ""))
    whole, _, fraction = text.partition(".")
    return whole[:width].ljust(width, "0") + fraction.ljust(6, "0")[:6]


def newest_key(seg: Any) -> tuple[str, str, int]:
    """Sort key of SEGs of one image, newest last: SeriesDate+SeriesTime (else ContentDate+Time), InstanceNumber."""
    series = _digits(seg.get("SeriesDate"), 8) + _digits(seg.get("SeriesTime"), 6)
    content = _digits(seg.get("ContentDate"), 8) + _digits(seg.get("ContentTime"), 6)
    try:
        number = int(seg.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        number = 0
    return series, content, number


def _frame_sources(group: Any) -> set[str]:
    return {
        str(source.ReferencedSOPInstanceUID)
        for derivation in group.get("DerivationImageSequence") or []
        for source in derivation.get("SourceImageSequence") or []
        if "ReferencedSOPInstanceUID" in source
    }


def label_from_seg(seg: Any, source_sop: str, shape: tuple[int, int]) -> np.ndarray:
    """The ``(H, W)`` uint8 class-index mask (0 background, 1.. the segments by segment number) of a SEG.

    BINARY and FRACTIONAL SEGs hold a frame per segment (``SegmentIdentificationSequence``'s
    ``ReferencedSegmentNumber``, per frame or shared); a LABELMAP SEG holds the segment numbers as pixel values.
    Frames whose per-frame Source Image names another instance than ``source_sop`` are left out.

    Args:
        seg: the SEG dataset with its pixels (any transfer syntax pydicom decodes: RLE natively).
        source_sop: the SOPInstanceUID of the labelled image.
        shape: the image's ``(Rows, Columns)``.

    Raises:
        ValueError: no frame of the SEG is of this image, or its frames are not the image's size.
    """
    segments = seg.get("SegmentSequence") or []
    # a LABELMAP may declare segment 0, the background (highdicom does)
    numbers = sorted({int(item.SegmentNumber) for item in segments if "SegmentNumber" in item} - {0})
    classes = {number: index for index, number in enumerate(numbers, start=1)}
    if len(classes) > 255:
        raise ValueError(f"SEG with {len(classes)} segments: more than a uint8 label holds")
    frames = np.asarray(seg.pixel_array)
    frames = frames.reshape(-1, *frames.shape[-2:])
    if tuple(frames.shape[1:]) != tuple(shape):
        raise ValueError(
            f"SEG frames of {frames.shape[1]} x {frames.shape[2]} pixels, the image {shape[0]} x {shape[1]}"
        )
    groups = list(seg.get("PerFrameFunctionalGroupsSequence") or [])
    shared = (seg.get("SharedFunctionalGroupsSequence") or [{}])[0]
    labelmap = str(seg.get("SegmentationType", "") or "").upper() == "LABELMAP"
    fractional = str(seg.get("SegmentationType", "") or "").upper() == "FRACTIONAL"
    threshold = float(seg.get("MaximumFractionalValue") or 1) / 2 if fractional else 0
    mask = np.zeros(shape, np.uint8)
    used = 0
    for index, frame in enumerate(frames):
        group = groups[index] if index < len(groups) else {}
        sources = _frame_sources(group) or _frame_sources(shared)
        if sources and source_sop not in sources:
            continue
        used += 1
        if labelmap:
            lut = np.zeros(max(int(frame.max()), max(numbers, default=0)) + 1, np.uint8)
            for number, value in classes.items():
                lut[number] = value
            painted = lut[frame.astype(np.int64)]
            mask[painted > 0] = painted[painted > 0]
            continue
        identification = group.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        if not identification:
            raise ValueError(f"SEG frame {index + 1} names no segment (SegmentIdentificationSequence)")
        number = int(identification[0].ReferencedSegmentNumber)
        if number in classes:  # a frame of a segment the SEG does not declare is left out
            mask[frame > threshold] = classes[number]
    if not used:
        raise ValueError(f"no frame of the SEG is of the image {source_sop}")
    return mask
