"""DICOM SR measurement reports (TID 1500): the area and maximum diameter of each segment, referencing the SEG.

``segdino dicom --also-sr`` writes ``sr.dcm`` beside ``seg.dcm``: a Comprehensive 3D SR (highdicom
:class:`~highdicom.sr.Comprehensive3DSR`) holding a Measurement Report (:class:`~highdicom.sr.MeasurementReport`,
TID 1500) in the source's study, in a new series. Per segmented frame and segment it has one Planar ROI Measurements
group (TID 1410) that references the SEG frame of that segment and the source image (and frame) it was derived from
(TID 1411 Referenced Segmentation Frame), with the segment's finding type (SNOMED CT, as in the SEG), its anatomic
site when known, the algorithm, and:

- **Area** (SCT 42798000) in mm2: the segment's pixel count times the pixel area (row spacing x column spacing);
- **Diameter** (SCT 81827009) with derivation **Maximum** (SCT 56851009) in mm: the Feret diameter of the segment
  (all its pixels together), ``skimage.measure.regionprops(..., spacing=(row, column)).feret_diameter_max``: the
  longest distance between two points of the boundary of the segment's convex hull, the points lying at the middle
  of the edges of the boundary pixels, measured in physical coordinates (each axis scaled by its own pixel size, so
  anisotropic pixels are right). A caliper on the pixel corners could measure up to one pixel more. An empty
  segment gets an area of 0 and no diameter.

The pixel size is the one ``segdino dicom`` reports (:func:`~segdino_monai.io.dicom_reader.pixel_size_mm`:
PixelSpacing, ImagerPixelSpacing, or the image region of the Sequence of Ultrasound Regions). **When it is unknown no
SR is written**: a measurement in mm would be a guess, and TID 1500 measurements have units; the report says why
(``sr_not_written``) and the areas stay in pixels there. Nor with a LABELMAP SEG (``--labelmap``): its frames hold
every segment, and a reference to a SEG frame cannot also name a segment (PS3.3 C.18.4).

UIDs are derived from the source and its SEG (:mod:`segdino_monai.dicom.uids`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.dicom.uids import derived_uid
from segdino_monai.utils.atomic import atomic_write

__all__ = ["seg_frame_numbers", "segment_measurements", "write_sr"]

logger = logging.getLogger(__name__)


def segment_measurements(
    mask: np.ndarray, segment_number: int, pixel_size_mm: Sequence[float]
) -> tuple[float, float | None]:
    """Area (mm2) and maximum (Feret) diameter (mm, ``None`` for an empty segment) of one segment of a mask.

    Args:
        mask: ``(H, W)`` class indices.
        segment_number: the class whose pixels form the segment.
        pixel_size_mm: (row, column) size of a pixel in mm.
    """
    from skimage.measure import regionprops

    region = np.asarray(mask) == segment_number
    spacing = (float(pixel_size_mm[0]), float(pixel_size_mm[1]))
    area = float(np.count_nonzero(region)) * spacing[0] * spacing[1]
    if not region.any():
        return area, None
    (props,) = regionprops(region.astype(np.uint8), spacing=spacing)
    return area, float(props.feret_diameter_max)


def seg_frame_numbers(seg: Any) -> dict[tuple[int | None, int], int]:
    """``{(source frame number or None, segment number): SEG frame number}`` of a SEG, from its functional groups.

    The source frame is the Referenced Frame Number of the frame's Derivation Image Sequence (``None`` when the
    source is single-frame and no frame is named); either sequence may be in the shared functional groups.
    """
    shared = seg.SharedFunctionalGroupsSequence[0] if "SharedFunctionalGroupsSequence" in seg else {}
    found = {}
    for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
        identification = group.get("SegmentIdentificationSequence") or shared.get("SegmentIdentificationSequence")
        segment = int(identification[0].ReferencedSegmentNumber)
        frame = None
        for derivation in group.get("DerivationImageSequence") or shared.get("DerivationImageSequence") or []:
            for item in derivation.get("SourceImageSequence", []):
                if "ReferencedFrameNumber" in item:
                    frame = int(item.ReferencedFrameNumber)
        found.setdefault((frame, segment), index)
    return found


def write_sr(
    source: Any,
    seg_path: str | Path,
    masks: Sequence[tuple[int | None, np.ndarray]],
    pixel_size_mm: Sequence[float],
    path: str | Path,
    options: Any,
    num_segments: int = 1,
    series_number: int = 903,
    series_description: str = "SegDINO measurements",
) -> Path:
    """Write the TID 1500 measurement report of ``masks``, referencing the SEG at ``seg_path`` and the source.

    Args:
        source: the source dataset as the SEG copies it (:func:`~segdino_monai.dicom.source.prepare_seg_source`).
        seg_path: the SEG written for ``masks``.
        masks: ``(frame number or None for a single-frame source, (H, W) mask)`` of each segmented frame.
        pixel_size_mm: (row, column) size of a pixel in mm.
        path: the SR file to write.
        options: the SEG's :class:`~segdino_monai.dicom.seg.SegOptions` (finding type, labels, model name).
        num_segments: number of foreground classes.
        series_number: SeriesNumber of the SR's series.
        series_description: SeriesDescription.

    Raises:
        ValueError: for a SEG that is not BINARY (one segment per frame).
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import segdino_monai

    seg = pydicom.dcmread(str(seg_path))
    if seg.SegmentationType != "BINARY":
        raise ValueError(f"{seg_path}: a {seg.SegmentationType} SEG; the SR references BINARY SEG frames")
    spec = options.spec()
    frames_of = seg_frame_numbers(seg)
    source_uid, seg_uid = str(source.SOPInstanceUID), str(seg.SOPInstanceUID)
    algorithm = hd.sr.AlgorithmIdentification(
        name="SegDINO", version=f"segdino-monai {segdino_monai.__version__}; model {options.model_name}"
    )
    sites = [hd.sr.FindingSite(anatomic_location=spec.anatomic_region)] if spec.anatomic_region is not None else None
    groups = []
    for number, label in enumerate(options.labels(num_segments), start=1):
        tracking_uid = derived_uid(source_uid, seg_uid, f"sr-tracking-{number}")
        tracking = hd.sr.TrackingIdentifier(uid=tracking_uid, identifier=f"{label} (segment {number})")
        for frame, mask in masks:
            area, diameter = segment_measurements(mask, number, pixel_size_mm)
            measurements = [hd.sr.Measurement(name=codes.SCT.Area, value=area, unit=codes.UCUM.SquareMillimeter)]
            if diameter is not None:
                maximum = codes.SCT.Maximum
                measurements.append(
                    hd.sr.Measurement(codes.SCT.Diameter, diameter, codes.UCUM.Millimeter, derivation=maximum)
                )
            reference = hd.sr.ReferencedSegmentationFrame(
                sop_class_uid=str(seg.SOPClassUID),
                sop_instance_uid=seg_uid,
                frame_number=frames_of[(frame, number)],
                segment_number=number,
                source_image=hd.sr.SourceImageForSegmentation(
                    str(source.SOPClassUID), source_uid, [frame] if frame is not None else None
                ),
            )
            # PS3.3 C.18.4 (Image Reference Macro, Table C.18.4-1): Referenced Segment Number is required only
            # where no Referenced Frame Number is given, and is not present otherwise; highdicom writes both. A SEG
            # frame holds one segment, so the frame names it: dciodvfy reports the extra attribute as an error.
            del reference[0].ReferencedSOPSequence[0].ReferencedSegmentNumber
            groups.append(
                hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                    tracking_identifier=tracking,
                    referenced_segment=reference,
                    finding_type=spec.property_type,
                    finding_sites=sites,
                    algorithm_id=algorithm,
                    measurements=measurements,
                )
            )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=derived_uid(source_uid, seg_uid, "sr-device"),
            name="SegDINO",
            manufacturer_name=options.manufacturer,
            model_name=options.model_name[:64],
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[source, seg],
        content=report,
        series_instance_uid=derived_uid(source_uid, seg_uid, "sr-series"),
        series_number=series_number,
        sop_instance_uid=derived_uid(source_uid, seg_uid, "sr"),
        instance_number=1,
        manufacturer=options.manufacturer,
        is_complete=True,
        series_description=series_description,
    )
    return atomic_write(path, lambda tmp: sr.save_as(tmp, enforce_file_format=True))
