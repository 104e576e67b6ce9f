"""DICOM objects the package writes, one module per kind as highdicom splits them: SEG, SC, SR, source repairs, UIDs.

Importing this package needs only pydicom (2.4 or 3); highdicom and pydicom-3-only functions are imported inside the
functions that need them (SEG, SC and SR writing), so the MONAI Label environment (pydicom 2, no highdicom) can
import it too. Reading DICOM images is :mod:`segdino_monai.io.dicom_reader`.
"""

from __future__ import annotations

from segdino_monai.dicom.seg import DEFAULT_TASK, SEGMENT_TASKS, SegmentTask, SegOptions, seg_uids, write_seg
from segdino_monai.dicom.source import SEG_REQUIRED_ATTRIBUTES, SegUnsupportedError, prepare_seg_source

__all__ = [
    "DEFAULT_TASK",
    "SEGMENT_TASKS",
    "SEG_REQUIRED_ATTRIBUTES",
    "SegOptions",
    "SegUnsupportedError",
    "SegmentTask",
    "prepare_seg_source",
    "seg_uids",
    "write_seg",
]
