"""Write a segmentation as a DICOM SEG (highdicom): the segment tasks, the SEG options, derived UIDs.

The file is written atomically: to a temporary file in the same folder, then ``os.replace``. DICOM SEG objects
reference the source's original UIDs and are pixel-aligned with it; the source file is only read, never rewritten.
highdicom is imported inside the SEG writing functions only (it needs pydicom 3).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.sr.coding import Code

from segdino_monai.dicom.seg_frames import frame_referenced_segmentation, needs_frame_references
from segdino_monai.dicom.source import SegUnsupportedError, prepare_seg_source
from segdino_monai.utils.atomic import atomic_write
from segdino_monai.utils.errors import InputError

__all__ = [
    "DEFAULT_TASK",
    "SEGMENT_TASKS",
    "SegOptions",
    "SegUnsupportedError",
    "SegGeometry",
    "SegmentTask",
    "seg_geometry",
    "seg_uids",
    "write_seg",
]

logger = logging.getLogger(__name__)

_MORPHOLOGICALLY_ABNORMAL = Code("49755003", "SCT", "Morphologically Abnormal Structure")


@dataclass(frozen=True)
class SegmentTask:
    """What a segment is, in SNOMED CT terms, for the SEG's Segment Sequence.

    Args:
        label: the segment label.
        property_type: SegmentedPropertyTypeCodeSequence.
        category: SegmentedPropertyCategoryCodeSequence.
        anatomic_region: AnatomicRegionSequence (``None`` to leave it out).
    """

    label: str
    property_type: Code
    category: Code = _MORPHOLOGICALLY_ABNORMAL
    anatomic_region: Code | None = None


#: coded segment descriptions per task (SCT codes from pydicom's code dictionary where it has them).
SEGMENT_TASKS: dict[str, SegmentTask] = {
    "polyp": SegmentTask("Polyp", Code("41329004", "SCT", "Polyp"), anatomic_region=Code("71854001", "SCT", "Colon")),
    "thyroid-nodule": SegmentTask(
        "Thyroid nodule", Code("237495005", "SCT", "Thyroid Nodule"), anatomic_region=Code("69748006", "SCT", "Thyroid")
    ),
    "breast-lesion": SegmentTask(
        "Breast lesion", Code("52988006", "SCT", "Lesion"), anatomic_region=Code("76752008", "SCT", "Breast")
    ),
    "skin-lesion": SegmentTask(
        "Skin lesion", Code("95324001", "SCT", "Skin lesion"), anatomic_region=Code("39937001", "SCT", "Skin")
    ),
    "lesion": SegmentTask("Lesion", Code("52988006", "SCT", "Lesion")),
}
#: the default task of each preprocessing modality (ultrasound: a generic lesion, as the organ is not known).
DEFAULT_TASK = {"endoscopy": "polyp", "dermoscopy": "skin-lesion", "ultrasound": "lesion"}


@dataclass
class SegOptions:
    """Descriptive options of a written SEG, and which DICOM objects go with it.

    Args:
        task: key of :data:`SEGMENT_TASKS` (or a :class:`SegmentTask`) describing segment 1.
        segment_labels: labels of segments 2, 3, ... for multi-class models (default ``"<label> class k"``).
        segmentation_type: ``BINARY`` (default, most widely supported) or ``LABELMAP``.
        model_name: the model, recorded in the algorithm identification.
        series_description: SeriesDescription.
        series_number: SeriesNumber.
        content_creator_name: ContentCreatorName (DICOM person name).
        manufacturer: Manufacturer.
        model_id: what identifies the model's weights beyond its name (``segdino dicom``: the decoder checkpoint's
            SHA-256); with the source and these options it determines the SEG's UIDs (:func:`seg_uids`).
        also_sc: also write a Secondary Capture overlay beside the SEG
            (:mod:`segdino_monai.dicom.sc`; series ``series_number + 1``).
        also_sr: also write a TID 1500 SR measurement report referencing the SEG
            (:mod:`segdino_monai.dicom.sr`; series ``series_number + 2``).
        algorithm_type: SegmentAlgorithmType of every segment: ``AUTOMATIC`` (the model's mask) or
            ``SEMIAUTOMATIC`` (a person's label drawn from the model's proposal, as MONAI Label's final labels).
    """

    task: str | SegmentTask = "lesion"
    segment_labels: Sequence[str] = field(default_factory=tuple)
    segmentation_type: str = "BINARY"
    model_name: str = "SegDINO"
    series_description: str = "SegDINO segmentation"
    series_number: int = 901
    content_creator_name: str = "SegDINO^Algorithm"
    manufacturer: str = "segdino-monai"
    model_id: str = ""
    also_sc: bool = False
    also_sr: bool = False
    algorithm_type: str = "AUTOMATIC"

    def spec(self) -> SegmentTask:
        """The :class:`SegmentTask` of segment 1."""
        if isinstance(self.task, SegmentTask):
            return self.task
        if self.task not in SEGMENT_TASKS:
            raise InputError(f"Unknown segmentation task {self.task!r}; choose one of {sorted(SEGMENT_TASKS)}")
        return SEGMENT_TASKS[self.task]

    def labels(self, num_segments: int) -> list[str]:
        """The labels of segments 1..num_segments."""
        first = self.spec().label
        extra = list(self.segment_labels)
        return [first] + [
            extra[k - 2] if k - 2 < len(extra) else f"{first} class {k}" for k in range(2, num_segments + 1)
        ]


def write_seg(
    source: Any,
    mask: np.ndarray,
    path: str | Path,
    options: SegOptions | None = None,
    num_segments: int = 1,
) -> Path:
    """Write a DICOM SEG of ``mask`` referencing ``source``.

    Args:
        source: the source image as a pydicom ``Dataset`` (as read, original UIDs) or its path.
        mask: class indices (0 background, 1..num_segments), ``(H, W)`` for a single-frame source or
            ``(F, H, W)`` with one mask per frame of a multi-frame source, pixel-aligned with the source.
        path: the SEG file to write.
        options: descriptive options (:class:`SegOptions`).
        num_segments: number of foreground classes.

    Raises:
        SegUnsupportedError: when the source lacks an attribute a SEG must reference (its study, series or
            instance UID, ...) or highdicom refuses it (a SOP class it does not know). A multi-frame source without a
            frame of reference (cine, video) gets one SEG frame per source frame and segment, each referencing its
            source frame (:mod:`segdino_monai.dicom.seg_frames`).
        ValueError: when the mask does not fit the source.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import segdino_monai

    options = options or SegOptions()
    ds = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(str(source), force=True)
    ds, _ = prepare_seg_source(ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    mask = np.asarray(mask).astype(np.uint8)
    expected = (int(ds.Rows), int(ds.Columns)) if frames == 1 else (frames, int(ds.Rows), int(ds.Columns))
    if mask.ndim == 3 and frames == 1 and mask.shape[0] == 1:
        mask = mask[0]
    if tuple(mask.shape) != expected:
        raise ValueError(f"mask shape {mask.shape} does not fit the source {ds.get('SOPInstanceUID')}: {expected}")
    spec = options.spec()
    algorithm = hd.AlgorithmIdentificationSequence(
        name="SegDINO",
        family=codes.DCM.ArtificialIntelligence,
        version=f"segdino-monai {segdino_monai.__version__}; model {options.model_name}",
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=spec.category,
            segmented_property_type=spec.property_type,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues[options.algorithm_type],
            algorithm_identification=algorithm,
            anatomic_regions=[spec.anatomic_region] if spec.anatomic_region is not None else None,
        )
        for number, label in enumerate(options.labels(num_segments), start=1)
    ]
    series_uid, sop_uid = seg_uids(ds, options)
    geometry = seg_geometry(ds)
    spatial = _has_coordinate_system(ds)
    kwargs = dict(
        segmentation_type=options.segmentation_type,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=options.series_number,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer=options.manufacturer,
        manufacturer_model_name=options.model_name,
        software_versions=f"segdino-monai {segdino_monai.__version__}",
        device_serial_number="none",
        series_description=options.series_description,
        content_creator_name=options.content_creator_name,
        content_label="SEGDINO",
        content_description=f"{spec.label} segmentation by SegDINO",
        omit_empty_frames=False,
    )
    if not spatial:
        # highdicom copies the source's plane geometry when it has a coordinate system; without one it takes Pixel
        # Measures from a PixelSpacing only, so they are given here (the ultrasound region's, or 1\\1)
        kwargs["pixel_measures"] = hd.PixelMeasuresSequence(
            pixel_spacing=list(geometry.pixel_spacing),
            slice_thickness=geometry.slice_thickness,
            spacing_between_slices=geometry.spacing_between_slices,
        )
    try:
        if needs_frame_references(ds):  # a cine loop or video: one SEG frame per source frame, referenced by number
            seg = frame_referenced_segmentation(ds, mask, **kwargs)
        else:
            seg = hd.seg.Segmentation(source_images=[ds], pixel_array=mask, **kwargs)
    except KeyError as err:  # highdicom's module tables do not know the (retired) SOP class of the source
        raise SegUnsupportedError(f"highdicom does not know the source's SOP class {ds.get('SOPClassUID')}") from err
    except AttributeError as err:  # an attribute highdicom reads from the source is missing: name it
        raise SegUnsupportedError(f"the source lacks an attribute a SEG needs ({err})") from err
    except ValueError as err:  # the masks, overlays and report are still written, with this reason
        what = f"this {frames}-frame source" if frames > 1 else "this source"
        raise SegUnsupportedError(f"highdicom cannot write a SEG for {what}: {' '.join(str(err).split())}") from err
    if not spatial:
        _add_plane_geometry(seg, geometry)
    if "FrameOfReferenceUID" not in seg and "PatientOrientation" not in seg:
        # General Image module, Type 2C: required when the image has no plane orientation/position (US, VL)
        seg.PatientOrientation = ds.get("PatientOrientation", None) or ""
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


@dataclass(frozen=True)
class SegGeometry:
    r"""The plane geometry a SEG gets when its source has no coordinate system (no plane position/orientation).

    Viewers read Pixel Measures, Plane Orientation and a Plane Position per frame unconditionally (OHIF 3's SEG
    viewport blanks without them), so every SEG has them: the source's where it has them, else these.

    Args:
        pixel_spacing: (row, column) PixelSpacing in mm.
        source: where it comes from: ``PixelSpacing``, ``ImagerPixelSpacing``, ``SequenceOfUltrasoundRegions``, or
            ``None`` when unknown (then ``1\1``, a pixel grid without physical size).
        note: why the spacing is ``1\1`` (``None`` when known).
        slice_thickness: SliceThickness (the source's, else 1).
        spacing_between_slices: SpacingBetweenSlices (the source's, else 1).
        image_orientation: ImageOrientationPatient (the source's, else 1,0,0,0,1,0: rows along x, columns along y).
        image_position: ImagePositionPatient of every frame (the source's, else 0,0,0).
    """

    pixel_spacing: tuple[float, float]
    source: str | None
    note: str | None = None
    slice_thickness: float = 1.0
    spacing_between_slices: float = 1.0
    image_orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    image_position: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def as_report(self) -> dict[str, Any]:
        """What ``report.json`` says of it (``seg_geometry``)."""
        return {"pixel_spacing_mm": list(self.pixel_spacing), "pixel_spacing_source": self.source, "note": self.note}


def seg_geometry(ds: Any) -> SegGeometry:
    """The :class:`SegGeometry` of a source.

    Its pixel size as ``segdino dicom`` reads it (:func:`~segdino_monai.io.dicom_reader.pixel_size_mm`), its
    orientation and position where it has them.
    """
    from segdino_monai.io.dicom_reader import pixel_size_mm

    spacing, source = pixel_size_mm(ds)
    note = None
    if spacing is None:
        note = "pixel size unknown (no PixelSpacing, ImagerPixelSpacing or calibrated ultrasound region): 1\\1"
        spacing = [1.0, 1.0]

    def positive(keyword: str) -> float:
        value = ds.get(keyword)
        try:
            return float(value) if value is not None and float(value) > 0 else 1.0
        except (TypeError, ValueError):
            return 1.0

    orientation = ds.get("ImageOrientationPatient")
    position = ds.get("ImagePositionPatient")
    return SegGeometry(
        pixel_spacing=(float(spacing[0]), float(spacing[1])),
        source=source,
        note=note,
        slice_thickness=positive("SliceThickness"),
        spacing_between_slices=positive("SpacingBetweenSlices"),
        image_orientation=tuple(float(v) for v in orientation)
        if orientation is not None and len(orientation) == 6
        else SegGeometry.image_orientation,
        image_position=tuple(float(v) for v in position)
        if position is not None and len(position) == 3
        else SegGeometry.image_position,
    )


def _has_coordinate_system(ds: Any) -> bool:
    """Whether highdicom finds a patient (or slide) coordinate system in the source, and so writes the geometry."""
    from highdicom.spatial import get_image_coordinate_system

    return get_image_coordinate_system(ds) is not None


def _add_plane_geometry(seg: Any, geometry: SegGeometry) -> None:
    """Plane Orientation (shared) and a Plane Position per frame, added after highdicom built the SEG.

    highdicom 0.28 refuses ``plane_orientation`` and ``plane_positions`` for a source without a frame of reference
    (``TypeError``: "the segmentation pixel array must be spatially aligned with the source images", image.py), yet
    the Segmentation IOD allows them there (PS3.3 A.51, Table A.51-2: Plane Position (Patient) and Plane Orientation
    (Patient) are "U" without a Frame of Reference) and OHIF reads them unconditionally. The values are highdicom's
    own sequences: the source's orientation/position where it has them, else the identity orientation and the
    origin, on every frame (each SEG frame lies on its source frame, pixel for pixel).
    """
    import highdicom as hd

    shared = seg.SharedFunctionalGroupsSequence[0]
    shared.PlaneOrientationSequence = hd.PlaneOrientationSequence("PATIENT", list(geometry.image_orientation))
    for item in seg.PerFrameFunctionalGroupsSequence:
        item.PlanePositionSequence = hd.PlanePositionSequence("PATIENT", list(geometry.image_position))


def seg_uids(source: Any, options: SegOptions) -> tuple[str, str]:
    """The SeriesInstanceUID and SOPInstanceUID of the SEG of ``source``: derived, not random.

    They are hashes (pydicom's ``generate_uid`` with entropy sources) of the source's SOPInstanceUID and what makes
    the SEG (model name and id, task, segmentation type, series number and description), so segmenting the same
    instance again with the same model gives the same UIDs, and a PACS that receives the SEG again (a rerun, a
    retried STOW-RS or C-STORE) replaces or keeps its copy instead of holding two. Another model or task gives
    other UIDs: another SEG.
    """
    from pydicom.uid import generate_uid

    identity = [
        str(source.SOPInstanceUID),
        options.model_name,
        options.model_id,
        options.spec().label,
        options.segmentation_type,
        str(options.series_number),
        options.series_description,
    ]
    return generate_uid(entropy_srcs=["SEG series", *identity]), generate_uid(entropy_srcs=["SEG", *identity])
