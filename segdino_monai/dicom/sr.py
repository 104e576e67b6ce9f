"""DICOM SR measurement reports (TID 1500): the area and maximum diameter of each segment, referencing the SEG.

``segdino dicom --also-sr`` writes ``sr.dcm`` beside ``seg.dcm``: a Comprehensive 3D SR (highdicom
:class:`~highdicom.sr.Comprehensive3DSR`) holding a Measurement Report (:class:`~highdicom.sr.MeasurementReport`,
TID 1500) in the source's study, in a new series. Per segmented frame and segment it has one Planar ROI Measurements
group (TID 1410, highdicom's :class:`~highdicom.sr.PlanarROIMeasurementsAndQualitativeEvaluations`) with its own
tracking UID (OHIF merges the groups of one tracking UID), the segment's finding type (SNOMED CT, as in the SEG), its
anatomic site when known, the algorithm, and what a viewer draws (OHIF's SR viewport draws SCOORD items only):

- the **Image Region**: the segment's outline on the source image (and frame) as a closed SCOORD POLYLINE in pixel
  coordinates (column, row; first point repeated last), from ``skimage.measure.find_contours`` at 0.5 of the padded
  mask, the largest part, simplified within 1 pixel (:func:`segment_outline`);
- the Diameter's end points, a 2-point SCOORD POLYLINE INFERRED FROM under the Diameter (TID 300 via TID 320).

TID 1410 takes one region reference, so the SEG is referenced by the SR's evidence; an empty segment (nothing to
draw) references its SEG frame and source image instead (TID 1411 Referenced Segmentation Frame). The measurements:

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segdino_monai.dicom.uids import derived_uid
from segdino_monai.utils.atomic import atomic_write

__all__ = ["SegmentOutline", "seg_frame_numbers", "segment_measurements", "segment_outline", "write_sr"]

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
    outline = segment_outline(mask, segment_number, pixel_size_mm)
    return outline.area, outline.diameter


@dataclass(frozen=True)
class SegmentOutline:
    """A segment's measurements and where they lie on the image, in SCOORD pixel coordinates (column, row).

    SCOORD coordinates (PS3.3 C.18.6.1.1) put (0, 0) at the top left corner of the top left pixel, so the centre of
    pixel (row r, column c) is (c + 0.5, r + 0.5).

    Args:
        area: area in mm2.
        diameter: maximum (Feret) diameter in mm (``None`` for an empty segment).
        outline: ``(N, 2)`` closed polyline (first point repeated last) around the segment's largest part, on the
            boundary between its pixels and the others (``None`` for an empty segment).
        diameter_line: ``(2, 2)`` end points of the maximum diameter (``None`` for an empty segment).
    """

    area: float
    diameter: float | None
    outline: np.ndarray | None = None
    diameter_line: np.ndarray | None = None


def segment_outline(mask: np.ndarray, segment_number: int, pixel_size_mm: Sequence[float]) -> SegmentOutline:
    """The area, Feret diameter, outline and diameter end points of one segment (:class:`SegmentOutline`).

    The Feret diameter is computed as ``skimage.measure.regionprops(...).feret_diameter_max`` computes it (contour at
    0.5 of the segment's convex hull padded by 2, greatest distance in physical coordinates), here over the hull's
    vertices only, and keeping the two points. The outline is ``skimage.measure.find_contours`` at 0.5 of the padded
    mask, the longest-area contour (the largest part of the segment, without its holes), simplified by
    ``approximate_polygon`` within 1 pixel.
    """
    from scipy.spatial import ConvexHull, QhullError
    from scipy.spatial.distance import pdist, squareform
    from skimage.measure import approximate_polygon, find_contours, regionprops

    region = np.asarray(mask) == segment_number
    spacing = np.array([float(pixel_size_mm[0]), float(pixel_size_mm[1])])
    area = float(np.count_nonzero(region)) * spacing[0] * spacing[1]
    if not region.any():
        return SegmentOutline(area, None)
    (props,) = regionprops(region.astype(np.uint8), spacing=tuple(spacing))
    hull = np.pad(props.image_convex, 2, mode="constant", constant_values=0)
    points = np.vstack(find_contours(hull, 0.5, fully_connected="high"))
    try:
        points = points[ConvexHull(points * spacing).vertices]  # the farthest pair are hull vertices
    except (QhullError, ValueError):  # a segment one pixel wide: every point
        pass
    distances = squareform(pdist(points * spacing, "sqeuclidean"))
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    diameter = float(np.sqrt(distances[first, second]))
    top_left = np.array(props.bbox[:2], dtype=float) - 2  # hull image: the bounding box, padded by 2
    ends = points[[first, second]] + top_left
    contours = find_contours(np.pad(region, 1).astype(np.float32), 0.5)
    contour = max(contours, key=_enclosed_area) - 1  # without the padding
    simplified = approximate_polygon(contour, tolerance=1.0)
    if len(simplified) < 4:  # a segment of a pixel or two: keep every point
        simplified = contour
    if not np.array_equal(simplified[0], simplified[-1]):
        simplified = np.vstack([simplified, simplified[:1]])
    return SegmentOutline(area, diameter, _scoord(simplified), _scoord(ends))


def _enclosed_area(contour: np.ndarray) -> float:
    """Area enclosed by a closed contour (shoelace formula), in pixels."""
    rows, columns = contour[:, 0], contour[:, 1]
    return 0.5 * abs(float(np.dot(rows, np.roll(columns, 1)) - np.dot(columns, np.roll(rows, 1))))


def _scoord(points: np.ndarray) -> np.ndarray:
    """(row, column) pixel indices to SCOORD (column, row) coordinates: pixel centres at +0.5."""
    return np.ascontiguousarray(points[:, ::-1] + 0.5, dtype=np.float32)


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


#: the tracking identifier OHIF (Cornerstone3D's SR adapters) hydrates a closed freehand outline from: a group with
#: another identifier is drawn but "not rehydratable", so it never reaches OHIF's measurement panel
FREEHAND_TRACKING_IDENTIFIER = "Cornerstone3DTools@^0.1.0:PlanarFreehandROI"


def _tracking_identifier(label: str, number: int, frame: int | None, outlined: bool) -> str:
    """The group's Tracking Identifier: OHIF's freehand-ROI tag where there is an outline, else a readable name."""
    if outlined:
        return FREEHAND_TRACKING_IDENTIFIER
    return f"{label} (segment {number}{'' if frame is None else f', frame {frame}'})"


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
        for frame, mask in masks:
            # one tracking UID per segment and frame: OHIF merges the groups of one tracking UID into one annotation
            suffix = "" if frame is None else f"-frame-{frame}"
            found = segment_outline(mask, number, pixel_size_mm)
            tracking = hd.sr.TrackingIdentifier(
                uid=derived_uid(source_uid, seg_uid, f"sr-tracking-{number}{suffix}"),
                identifier=_tracking_identifier(label, number, frame, outlined=found.diameter is not None),
            )
            measurements = [hd.sr.Measurement(name=codes.SCT.Area, value=found.area, unit=codes.UCUM.SquareMillimeter)]
            common = dict(
                tracking_identifier=tracking,
                finding_type=spec.property_type,
                finding_sites=sites,
                algorithm_id=algorithm,
                measurements=measurements,
            )
            if found.diameter is None:  # an empty segment: nothing to draw, the SEG frame is referenced instead
                groups.append(
                    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                        referenced_segment=_segmentation_frame(seg, source, frames_of[(frame, number)], number, frame),
                        **common,
                    )
                )
                continue
            diameter = hd.sr.Measurement(
                codes.SCT.Diameter, found.diameter, codes.UCUM.Millimeter, derivation=codes.SCT.Maximum
            )
            measurements.append(diameter)
            # TID 1410 with an Image Region (the outline on the source frame): what OHIF draws. TID 1410 takes one
            # region reference, so the SEG is referenced by the SR's evidence, not by the group.
            group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                referenced_region=_image_region(source, frame, found.outline), **common
            )
            # TID 300 row "INFERRED FROM" TID 320 (Image or Spatial Coordinates): the diameter's two end points.
            # highdicom refuses coordinates in the measurements of a planar ROI group ("Referenced coordinates in
            # measurements are not allowed"), so the SCOORD is added to the Diameter's NUM item once the group is
            # built (the group holds that item itself).
            line = _image_region(source, frame, found.diameter_line)
            line.RelationshipType = "INFERRED FROM"
            diameter[0].ContentSequence.append(line)
            groups.append(group)
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


def _image_region(source: Any, frame: int | None, points: np.ndarray) -> Any:
    """An SCOORD POLYLINE on the source image (and frame of a multi-frame source)."""
    import highdicom as hd

    image = hd.sr.SourceImageForRegion(
        str(source.SOPClassUID), str(source.SOPInstanceUID), [frame] if frame is not None else None
    )
    return hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=points, source_image=image)


def _segmentation_frame(seg: Any, source: Any, seg_frame: int, number: int, frame: int | None) -> Any:
    """The TID 1411 Referenced Segmentation Frame of a segment: its SEG frame and source image (and frame)."""
    import highdicom as hd

    reference = hd.sr.ReferencedSegmentationFrame(
        sop_class_uid=str(seg.SOPClassUID),
        sop_instance_uid=str(seg.SOPInstanceUID),
        frame_number=seg_frame,
        segment_number=number,
        source_image=hd.sr.SourceImageForSegmentation(
            str(source.SOPClassUID), str(source.SOPInstanceUID), [frame] if frame is not None else None
        ),
    )
    # PS3.3 C.18.4 (Image Reference Macro, Table C.18.4-1): Referenced Segment Number is required only where no
    # Referenced Frame Number is given, and is not present otherwise; highdicom writes both. A SEG frame holds one
    # segment, so the frame names it: dciodvfy reports the extra attribute as an error.
    del reference[0].ReferencedSOPSequence[0].ReferencedSegmentNumber
    return reference
