"""Secondary Capture overlays: the mask blended in colour on the source frame, as a DICOM image every viewer shows.

Many PACS viewers cannot display a DICOM SEG; every one displays a Secondary Capture image. ``segdino dicom --also-sc``
writes, beside ``seg.dcm``, the overlay that ``overlay.png`` holds (:func:`segdino_monai.io.overlay.overlay`: the same
pixels) as a Secondary Capture Image (highdicom :class:`~highdicom.sc.SCImage`, RGB, uncompressed) in the source's
study, in a new series, with the source's Patient, General Study and Patient Study modules copied.

A multi-frame source (a cine loop) gets one single-frame Secondary Capture per segmented frame, ``sc_NNNN.dcm``
(NNNN the source frame number, also the Instance Number), all in one series: Secondary Capture Image Storage
(single-frame) is the one SC class that every PACS viewer displays (the multi-frame true colour SC class is missing
from older viewers, and highdicom writes only the single-frame class); a viewer shows the series frame by frame like
the cine. Each image references its source image (and frame) in its Source Image Sequence, carries the source's
lossy compression history (its pixels come from the decoded source), its Burned In Annotation and its Laterality
(empty, "unknown", when the source has none).

UIDs are derived from the source and its SEG (:mod:`segdino_monai.dicom.uids`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.dicom.uids import derived_uid
from segdino_monai.io.overlay import overlay
from segdino_monai.utils.atomic import atomic_write

__all__ = ["sc_file_name", "write_sc"]

logger = logging.getLogger(__name__)

#: (121322, DCM, "Source image for image processing operation"): the purpose of the reference to the source image.
_SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: the General Image module's lossy compression history, carried over from the source (PS3.3 C.7.6.1.1.5).
_LOSSY_HISTORY = ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod")


def sc_file_name(frame_number: int | None) -> str:
    """``sc.dcm`` for a single-frame source, ``sc_NNNN.dcm`` for frame NNNN of a multi-frame source."""
    return "sc.dcm" if frame_number is None else f"sc_{frame_number:04d}.dcm"


def write_sc(
    source: Any,
    frames: Sequence[tuple[int | None, np.ndarray, np.ndarray]],
    folder: str | Path,
    seg_uid: str | None = None,
    series_number: int = 902,
    series_description: str = "SegDINO segmentation overlay",
    manufacturer: str = "segdino-monai",
    label: str = "segmentation",
) -> list[str]:
    """Write one Secondary Capture overlay per frame into ``folder``; returns the file names, in frame order.

    Args:
        source: the source dataset as the SEG copies it (:func:`~segdino_monai.dicom.source.prepare_seg_source`).
        frames: ``(frame number or None for a single-frame source, (H, W, 3) RGB image on 0..255, (H, W) mask)``.
        folder: where to write (``sc.dcm`` or ``sc_NNNN.dcm``, :func:`sc_file_name`).
        seg_uid: the SOP Instance UID of the SEG these overlays accompany (for the derived UIDs).
        series_number: SeriesNumber of the overlays' series.
        series_description: SeriesDescription.
        manufacturer: Manufacturer.
        label: what the overlay shows, for the Derivation Description.
    """
    import highdicom as hd
    from pydicom import Dataset
    from pydicom.uid import UID

    import segdino_monai

    folder = Path(folder)
    source_uid = str(source.SOPInstanceUID)
    # highdicom picks the Patient and Study module attributes to copy by the source's IOD, and does not know retired
    # classes (Ultrasound Image Storage (Retired)); those modules are the same in every image IOD, so it is told the
    # source is a Secondary Capture, on a copy (a new dict of the same elements: Dataset(source) would share the
    # source's dict, and setting a value on a shared element would change the source)
    patient_and_study = Dataset(dict(source.items()))
    del patient_and_study.SOPClassUID
    patient_and_study.SOPClassUID = _SECONDARY_CAPTURE
    series_uid = derived_uid(source_uid, seg_uid, "sc-series")
    names = []
    for number, image, mask in frames:
        pixels = overlay(image, mask)
        sc = hd.sc.SCImage(
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            study_instance_uid=str(source.StudyInstanceUID),
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=derived_uid(source_uid, seg_uid, f"sc-frame-{number or 1}"),
            instance_number=number or 1,
            manufacturer=manufacturer,
            patient_orientation=("L", "F"),  # replaced below: highdicom needs a value, the source's is kept
            series_description=series_description,
            software_versions=f"segdino-monai {segdino_monai.__version__}",
        )
        sc.copy_patient_and_study_information(patient_and_study)
        # General Image module, Type 2C for an image without plane orientation: the source's own, or empty
        sc.PatientOrientation = source.get("PatientOrientation", None) or None
        reference = Dataset()
        reference.ReferencedSOPClassUID = UID(str(source.SOPClassUID))
        reference.ReferencedSOPInstanceUID = UID(source_uid)
        if number is not None:
            reference.ReferencedFrameNumber = number
        purpose = Dataset()
        purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = _SOURCE_PURPOSE
        reference.PurposeOfReferenceCodeSequence = [purpose]
        sc.SourceImageSequence = [reference]
        sc.DerivationDescription = f"SegDINO {label} blended in colour on the source image (not for diagnosis)"
        for keyword in _LOSSY_HISTORY:
            if str(source.get("LossyImageCompression", "") or "") == "01" and source.get(keyword) not in (None, ""):
                setattr(sc, keyword, source[keyword].value)
        # General Series, Type 2C (required for a paired body part): the source's, else empty (laterality unknown)
        sc.Laterality = source.get("Laterality", None) or None
        if "BurnedInAnnotation" in source:
            sc.BurnedInAnnotation = source.BurnedInAnnotation
        name = sc_file_name(number)
        atomic_write(folder / name, lambda tmp, sc=sc: sc.save_as(tmp, enforce_file_format=True))
        names.append(name)
    logger.debug("%s: %d Secondary Capture overlay(s) in series %s", source_uid, len(names), series_uid)
    return names
