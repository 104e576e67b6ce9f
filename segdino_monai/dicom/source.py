"""The source image as a DICOM SEG copies it: the attributes a SEG must reference, repairs made on a copy.

highdicom copies the source's Patient, Study and image-related attributes into the SEG, defects included; the
``_repair_*`` functions fill what a valid SEG needs on a copy of the source.
"""

from __future__ import annotations

import logging
from typing import Any

from segdino_monai.utils.errors import InputError

__all__ = ["DEIDENTIFICATION_UNKNOWN", "SEG_REQUIRED_ATTRIBUTES", "SegUnsupportedError", "prepare_seg_source"]

logger = logging.getLogger(__name__)


class SegUnsupportedError(InputError):
    """highdicom cannot encode a SEG for this source (e.g. a multi-frame source without a frame of reference)."""


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
