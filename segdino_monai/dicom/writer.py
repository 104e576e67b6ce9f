"""Write segmentations: DICOM SEG (highdicom), PNG masks and overlays, NIfTI, JSON reports and frame sidecars.

Every file is written atomically: to a temporary file in the same folder, then ``os.replace``. DICOM SEG objects
reference the source's original UIDs and are pixel-aligned with it; the source file is only read, never rewritten.
highdicom is imported inside :func:`write_seg` only (it needs pydicom 3).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.sr.coding import Code

from segdino_monai.atomic import atomic_write

__all__ = [
    "DEFAULT_TASK",
    "SEGMENT_TASKS",
    "SegmentTask",
    "SegUnsupportedError",
    "segment_areas",
    "write_json",
    "write_nifti",
    "write_overlay",
    "write_png_mask",
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


class SegUnsupportedError(ValueError):
    """highdicom cannot encode a SEG for this source (e.g. a multi-frame source without a frame of reference)."""


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=_json_default)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_png_mask(mask: np.ndarray, path: str | Path) -> Path:
    """Write an ``(H, W)`` class-index mask as an 8-bit PNG: 0/255 when binary, the class indices otherwise."""
    from PIL import Image

    mask = np.asarray(mask)
    png = (mask > 0).astype(np.uint8) * 255 if mask.max(initial=0) <= 1 else mask.astype(np.uint8)
    return atomic_write(path, lambda tmp: Image.fromarray(png).save(tmp, format="PNG"))


def write_overlay(image: np.ndarray, mask: np.ndarray, path: str | Path, alpha: float = 0.45) -> Path:
    """Write the ``(3, H, W)`` 0..255 image with the classes of an ``(H, W)`` mask blended in colour, as PNG."""
    from PIL import Image

    from segdino_monai.transforms.post import PALETTE

    rgb = np.moveaxis(np.asarray(image, dtype=np.float32), 0, -1).copy()
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"{path}: image size {rgb.shape[:2]} differs from its mask {mask.shape}")
    for index in range(1, int(mask.max(initial=0)) + 1):
        colour = np.array(PALETTE[(index - 1) % len(PALETTE)], dtype=np.float32)
        region = mask == index
        rgb[region] = (1 - alpha) * rgb[region] + alpha * colour
    out = np.clip(rgb, 0, 255).round().astype(np.uint8)
    return atomic_write(path, lambda tmp: Image.fromarray(out).save(tmp, format="PNG"))


def write_nifti(mask: np.ndarray, path: str | Path, pixel_size_mm: Sequence[float] | None = None) -> Path:
    """Write an ``(H, W)`` or ``(F, H, W)`` mask as NIfTI: x = column, y = row (as MONAI reads PNGs), z = frame.

    The affine holds the pixel size (column spacing on x, row spacing on y, in mm; 1 where unknown).
    """
    import nibabel as nib

    mask = np.asarray(mask, dtype=np.uint8)
    data = mask.T if mask.ndim == 2 else np.transpose(mask, (2, 1, 0))
    rows_mm, cols_mm = (float(pixel_size_mm[0]), float(pixel_size_mm[1])) if pixel_size_mm else (1.0, 1.0)
    affine = np.diag([cols_mm, rows_mm, 1.0, 1.0])
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    image.header.set_xyzt_units(xyz="mm")
    return atomic_write(path, lambda tmp: nib.save(image, tmp))


def segment_areas(
    mask: np.ndarray, labels: Sequence[str], pixel_size_mm: Sequence[float] | None = None
) -> list[dict[str, Any]]:
    """Area of each segment (class 1, 2, ...) of an ``(H, W)`` mask: pixels, and mm2 when the pixel size is known."""
    pixel_area = float(pixel_size_mm[0]) * float(pixel_size_mm[1]) if pixel_size_mm else None
    out = []
    for number, label in enumerate(labels, start=1):
        pixels = int(np.count_nonzero(np.asarray(mask) == number))
        out.append(
            {
                "segment_number": number,
                "label": label,
                "area_pixels": pixels,
                "area_mm2": None if pixel_area is None else round(pixels * pixel_area, 4),
            }
        )
    return out


@dataclass
class SegOptions:
    """Descriptive options of a written SEG.

    Args:
        task: key of :data:`SEGMENT_TASKS` (or a :class:`SegmentTask`) describing segment 1.
        segment_labels: labels of segments 2, 3, ... for multi-class models (default ``"<label> class k"``).
        segmentation_type: ``BINARY`` (default, most widely supported) or ``LABELMAP``.
        model_name: the model, recorded in the algorithm identification.
        series_description: SeriesDescription.
        series_number: SeriesNumber.
        content_creator_name: ContentCreatorName (DICOM person name).
        manufacturer: Manufacturer.
    """

    task: str | SegmentTask = "lesion"
    segment_labels: Sequence[str] = field(default_factory=tuple)
    segmentation_type: str = "BINARY"
    model_name: str = "SegDINO"
    series_description: str = "SegDINO segmentation"
    series_number: int = 901
    content_creator_name: str = "SegDINO^Algorithm"
    manufacturer: str = "segdino-monai"

    def spec(self) -> SegmentTask:
        """The :class:`SegmentTask` of segment 1."""
        if isinstance(self.task, SegmentTask):
            return self.task
        if self.task not in SEGMENT_TASKS:
            raise ValueError(f"Unknown segmentation task {self.task!r}; choose one of {sorted(SEGMENT_TASKS)}")
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
        SegUnsupportedError: when highdicom refuses the source (multi-frame sources without a frame of reference).
        ValueError: when the mask does not fit the source.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import segdino_monai

    options = options or SegOptions()
    ds = source if isinstance(source, pydicom.Dataset) else pydicom.dcmread(str(source), force=True)
    ds = _with_type2_attributes(ds)
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
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            anatomic_regions=[spec.anatomic_region] if spec.anatomic_region is not None else None,
        )
        for number, label in enumerate(options.labels(num_segments), start=1)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=[ds],
            pixel_array=mask,
            segmentation_type=options.segmentation_type,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=options.series_number,
            sop_instance_uid=hd.UID(),
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
    except KeyError as err:  # highdicom's module tables do not know the (retired) SOP class of the source
        raise SegUnsupportedError(f"highdicom does not know the source's SOP class {ds.get('SOPClassUID')}") from err
    except ValueError as err:
        if frames > 1:
            raise SegUnsupportedError(f"highdicom cannot write a SEG for this {frames}-frame source: {err}") from err
        raise
    if "FrameOfReferenceUID" not in seg and "PatientOrientation" not in seg:
        # General Image module, Type 2C: required when the image has no plane orientation/position (US, VL)
        seg.PatientOrientation = ds.get("PatientOrientation", None) or ""
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


#: Type 2 patient/study attributes highdicom copies from the source; some real files leave them out.
_TYPE2_COPIED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def _with_type2_attributes(ds: Any) -> Any:
    """A copy of ``ds`` with missing Type 2 patient/study attributes present and empty (the source is untouched)."""
    from pydicom.valuerep import DA, TM

    missing = [keyword for keyword in _TYPE2_COPIED if keyword not in ds]
    fixed = {}
    for keyword, kind, separators in (
        ("StudyDate", DA, ".-/"),
        ("StudyTime", TM, ":"),
        ("PatientBirthDate", DA, ".-/"),
    ):
        value = str(ds.get(keyword) or "")
        if not value or not any(c in value for c in separators):
            continue
        cleaned: str | None = value.translate({ord(c): None for c in separators})  # old ACR-NEMA 1997.04.24, 14:04:38
        try:
            kind(cleaned)
        except ValueError:
            cleaned = None
        fixed[keyword] = cleaned
    empty_charset = "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet
    if not missing and not fixed and not empty_charset:
        return ds
    copy = ds.copy()
    for keyword in missing:
        setattr(copy, keyword, None)
    for keyword, value in fixed.items():
        setattr(copy, keyword, value)
    if empty_charset:  # an empty value means the default repertoire; highdicom rejects it
        del copy.SpecificCharacterSet
    logger.info(
        "%s: normalised in the SEG only (the source is untouched): missing %s, non-conformant %s, empty charset %s",
        ds.get("SOPInstanceUID", "source"),
        missing or "none",
        sorted(fixed) or "none",
        empty_charset,
    )
    return copy
