"""Write segmentations: DICOM SEG (highdicom), PNG masks and overlays, NIfTI, JSON reports and frame sidecars.

Every file is written atomically: to a temporary file in the same folder, then ``os.replace``. DICOM SEG objects
reference the source's original UIDs and are pixel-aligned with it; the source file is only read, never rewritten.
highdicom is imported inside the SEG writing functions only (it needs pydicom 3).
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
from segdino_monai.dicom.seg_frames import frame_referenced_segmentation, needs_frame_references
from segdino_monai.errors import InputError
from segdino_monai.writers import write_nifti, write_overlay, write_png_mask  # the package's one encoding of each

__all__ = [
    "DEFAULT_TASK",
    "SEGMENT_TASKS",
    "SEG_REQUIRED_ATTRIBUTES",
    "SegmentTask",
    "SegUnsupportedError",
    "prepare_seg_source",
    "seg_uids",
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


class SegUnsupportedError(InputError):
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
            (:mod:`segdino_monai.dicom.secondary_capture`; series ``series_number + 1``).
        also_sr: also write a TID 1500 SR measurement report referencing the SEG
            (:mod:`segdino_monai.dicom.measurement_report`; series ``series_number + 2``).
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
    if "FrameOfReferenceUID" not in seg and "PatientOrientation" not in seg:
        # General Image module, Type 2C: required when the image has no plane orientation/position (US, VL)
        seg.PatientOrientation = ds.get("PatientOrientation", None) or ""
    return atomic_write(path, lambda tmp: seg.save_as(tmp, enforce_file_format=True))


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
#: attributes a SEG cannot be written without: it references the source's study, series and instance.
SEG_REQUIRED_ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")
#: Type 3 sequences of the Patient, General Study, Patient Study and Clinical Trial Subject/Study modules (PS3.3
#: C.7.1.1, C.7.2.1, C.7.2.2, C.7.1.3, C.7.2.3), which highdicom copies into the SEG: present, they need an item.
_TYPE3_PATIENT_STUDY_SEQUENCES = (
    "ReferencedPatientSequence",
    "IssuerOfPatientIDQualifiersSequence",
    "SourcePatientGroupIdentificationSequence",
    "GroupOfPatientsIdentificationSequence",
    "StrainStockSequence",
    "StrainCodeSequence",
    "GeneticModificationsSequence",
    "OtherPatientIDsSequence",
    "ReferencedPatientPhotoSequence",
    "EthnicGroupCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianIdentificationSequence",
    "ConsultingPhysicianIdentificationSequence",
    "ProcedureCodeSequence",
    "PhysiciansOfRecordIdentificationSequence",
    "PhysiciansReadingStudyIdentificationSequence",
    "ReferencedStudySequence",
    "RequestingServiceCodeSequence",
    "ReasonForPerformedProcedureCodeSequence",
    "AdmittingDiagnosesCodeSequence",
    "PatientSizeCodeSequence",
    "ReasonForVisitCodeSequence",
    "IssuerOfAdmissionIDSequence",
    "IssuerOfServiceEpisodeIDSequence",
    "OtherClinicalTrialProtocolIDsSequence",
    "ClinicalTrialTimePointTypeCodeSequence",
    "ConsentForClinicalTrialUseSequence",
)
#: Patient module attributes of a non-human patient (PS3.3 C.7.1.1): their presence says "animal", which then makes
#: the species Type 1C and these Type 2C; PatientSexNeutered (Patient Study module) is Type 2C for animals too.
_SPECIES = ("PatientSpeciesDescription", "PatientSpeciesCodeSequence")
_ANIMAL_TYPE2C = (
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "PatientSexNeutered",
)
#: LossyImageCompressionMethod of the lossy transfer syntaxes (PS3.3 C.7.6.1.1.5.1 defined terms).
_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.93": "ISO_15444_2",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}
#: DeidentificationMethod when the source says its identity was removed but not how (Type 1C in the Patient module).
DEIDENTIFICATION_UNKNOWN = "Not recorded in source image"


def prepare_seg_source(ds: Any) -> tuple[Any, list[str]]:
    """The source as a SEG can copy it, and what had to be repaired; the source dataset itself is never changed.

    highdicom copies the source's Patient, Study and image-related attributes into the SEG, defects included. Here a
    copy of the source gets, where the standard allows: missing Type 2 patient/study attributes added empty, old
    ACR-NEMA dates made DICOM dates, an empty SpecificCharacterSet removed, empty Type 3 patient/study sequences
    (an empty ``ProcedureCodeSequence``) removed, a ``PatientIdentityRemoved`` YES without its method given
    ``DeidentificationMethod`` "Not recorded in source image", the Type 2C attributes of an animal patient added empty
    (breed, responsible person, ...), breed attributes of a patient without a species removed, a
    ``ResponsiblePerson`` without its role emptied (animal) or removed, and the lossy compression history made
    complete (an empty ratio or method: from the source's own encoding where it is lossy, else removed).

    Args:
        ds: the source image dataset.

    Returns:
        ``(dataset, repairs)``: ``ds`` itself when nothing needed repair, else a repaired copy; one line per repair.

    Raises:
        SegUnsupportedError: when an attribute a SEG must reference (:data:`SEG_REQUIRED_ATTRIBUTES`) is missing.
    """
    from copy import deepcopy

    import pydicom.uid
    from pydicom.valuerep import DA, TM

    missing_required = [k for k in SEG_REQUIRED_ATTRIBUTES if k not in ds or ds[k].value in (None, "")]
    if missing_required:
        raise SegUnsupportedError(
            f"the source has no {', '.join(missing_required)}: a DICOM SEG must reference the source's study, "
            "series and instance"
        )
    for keyword in SEG_REQUIRED_ATTRIBUTES[:4]:
        if not pydicom.uid.UID(str(ds[keyword].value)).is_valid:
            raise SegUnsupportedError(f"the source's {keyword} {str(ds[keyword].value)!r} is not a valid UID")
    copy = deepcopy(ds)  # Dataset.copy() shares the data elements: setting a value there would change ds too
    repairs: list[str] = []
    missing = [keyword for keyword in _TYPE2_COPIED if keyword not in ds]
    for keyword in missing:
        setattr(copy, keyword, None)
    if missing:
        repairs.append(f"added empty Type 2 {', '.join(missing)}")
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
        setattr(copy, keyword, cleaned)
        repairs.append(f"{keyword} {value!r} written as {cleaned or 'empty'}")
    if "SpecificCharacterSet" in ds and not ds.SpecificCharacterSet:  # empty: the default repertoire
        del copy.SpecificCharacterSet
        repairs.append("removed empty SpecificCharacterSet")
    empty_sequences = [k for k in _TYPE3_PATIENT_STUDY_SEQUENCES if k in ds and not ds[k].value]
    for keyword in empty_sequences:
        delattr(copy, keyword)
    if empty_sequences:
        repairs.append(f"removed empty Type 3 {', '.join(empty_sequences)}")
    repairs += _repair_deidentification(ds, copy)
    repairs += _repair_patient_species(ds, copy)
    repairs += _repair_lossy_compression(ds, copy)
    if not repairs:
        return ds, []
    logger.info(
        "%s: repaired in the SEG only (the source is untouched): %s", ds.get("SOPInstanceUID"), "; ".join(repairs)
    )
    return copy, repairs


def _has_value(ds: Any, keyword: str) -> bool:
    return (
        keyword in ds
        and ds[keyword].value not in (None, "")
        and not (ds[keyword].VR == "SQ" and len(ds[keyword].value) == 0)
    )


def _repair_deidentification(ds: Any, copy: Any) -> list[str]:
    """``PatientIdentityRemoved`` YES needs ``DeidentificationMethod`` or its code sequence (Type 1C)."""
    if str(ds.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
        return []
    if _has_value(ds, "DeidentificationMethod") or _has_value(ds, "DeidentificationMethodCodeSequence"):
        return []
    if "DeidentificationMethodCodeSequence" in copy:
        del copy.DeidentificationMethodCodeSequence
    copy.DeidentificationMethod = DEIDENTIFICATION_UNKNOWN
    return [f"PatientIdentityRemoved YES without a method: DeidentificationMethod {DEIDENTIFICATION_UNKNOWN!r}"]


def _repair_patient_species(ds: Any, copy: Any) -> list[str]:
    """Make the animal/human attributes of the Patient module consistent (PS3.3 C.7.1.1)."""
    repairs = []
    animal = any(_has_value(ds, k) for k in _SPECIES)
    if animal:
        added = [k for k in _ANIMAL_TYPE2C if k not in ds]
        for keyword in added:
            setattr(copy, keyword, [] if keyword.endswith("Sequence") else None)
        if added:
            repairs.append(f"animal patient ({', '.join(k for k in _SPECIES if k in ds)}): added empty Type 2C "
                           f"{', '.join(added)}")  # fmt: skip
    else:
        for keyword in _SPECIES:  # present but empty: nothing says it is an animal
            if keyword in copy:
                delattr(copy, keyword)
        breed = [k for k in ("PatientBreedDescription", "PatientBreedCodeSequence", "BreedRegistrationSequence")
                 if k in ds]  # fmt: skip
        for keyword in breed:
            delattr(copy, keyword)
        if breed:
            repairs.append(f"breed attributes without a patient species: removed {', '.join(breed)}")
    if _has_value(ds, "ResponsiblePerson") and not _has_value(ds, "ResponsiblePersonRole"):
        # Type 1C role: required when the person has a value; the role is not known, so the name cannot stay
        if animal:
            copy.ResponsiblePerson = None
            repairs.append("ResponsiblePerson without ResponsiblePersonRole: emptied (Type 2C for an animal)")
        else:
            del copy.ResponsiblePerson
            repairs.append("ResponsiblePerson without ResponsiblePersonRole: removed")
    return repairs


def _repair_lossy_compression(ds: Any, copy: Any) -> list[str]:
    """A lossy source's ratio and method are Type 1C in the SEG: complete them from the source's encoding or drop."""
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if "LossyImageCompression" in ds and not flag:
        del copy.LossyImageCompression  # empty Type 1 in the SEG; highdicom then writes 00 unless repaired below
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    method = _LOSSY_METHODS.get(syntax)
    ratio = _compression_ratio(ds) if method else None
    lossy_now = syntax in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")  # always lossy (JPEG 2000, JPEG-LS
    # and HTJ2K may be reversible: their use alone does not say the image is lossy)
    repairs = []
    if not flag and lossy_now:
        copy.LossyImageCompression = "01"
        repairs.append(f"LossyImageCompression empty: 01 (the source is stored as {syntax})")
        flag = "01"
    elif not flag and "LossyImageCompression" in ds:
        repairs.append("removed empty LossyImageCompression")
    if flag != "01":
        return repairs
    for keyword, derived in (
        ("LossyImageCompressionRatio", None if ratio is None else f"{ratio:.4g}"),
        ("LossyImageCompressionMethod", method),
    ):
        if _has_value(ds, keyword):
            continue
        if derived is not None:
            setattr(copy, keyword, derived)
            repairs.append(f"{keyword} {'empty' if keyword in ds else 'missing'}: {derived} (from the source's "
                           "encoding)")  # fmt: skip
        elif keyword in ds:
            delattr(copy, keyword)
            repairs.append(f"removed empty {keyword} (not known from the source)")
    return repairs


def _compression_ratio(ds: Any) -> float | None:
    """Uncompressed size over the source's encapsulated pixel data size, or ``None`` when it cannot be told."""
    try:
        from pydicom.pixels.utils import get_expected_length
    except ImportError:  # pydicom 2
        from pydicom.pixel_data_handlers.util import get_expected_length
    try:
        stored = len(ds.PixelData)
        return float(get_expected_length(ds)) / stored if stored else None
    except (AttributeError, KeyError, TypeError, ValueError):  # no pixel data in memory, odd attributes
        return None
