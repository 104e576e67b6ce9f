"""Every SEG written for the public US and VL fixtures, and for copies with the defects real files have, is valid.

dciodvfy (dicom3tools) is the judge: zero "Error" lines per SEG. The defective copies are built with pydicom from
a fixture file; the same copies written *without* the repairs give dciodvfy errors, so the check can fail.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from segdino_monai.dicom import seg as seg_module
from segdino_monai.dicom.seg import write_seg
from segdino_monai.dicom.source import DEIDENTIFICATION_UNKNOWN
from segdino_monai.services.dicom_batch import run_dicom

#: Type 2 attributes of the Patient and General Study modules (PS3.3 C.7.1.1, C.7.2.1) that highdicom copies.
TYPE2_PATIENT_STUDY = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID", "StudyDate",
                       "StudyTime", "AccessionNumber", "ReferringPhysicianName")  # fmt: skip
LOSSY = "us/pydicom__pydicom-data/US1_J2KI.dcm"  # JPEG 2000 irreversible, LossyImageCompression 01, ratio 16


def _dciodvfy(validator: str, path: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) of dciodvfy for one file."""
    result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    lines = (result.stdout + result.stderr).splitlines()
    return [x for x in lines if x.startswith("Error")], [x for x in lines if x.startswith("Warning")]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _defective_copies(dicom_dir: Path, folder: Path) -> dict[str, Path]:
    """Copies of a lossy US fixture with one defect each, as found in public files; new SOP Instance UIDs."""
    folder.mkdir()
    variants = {}

    def save(name: str, change) -> None:
        ds = pydicom.dcmread(dicom_dir / LOSSY)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        change(ds)
        ds.save_as(folder / f"{name}.dcm")
        variants[name] = folder / f"{name}.dcm"

    save("lossy_empty_ratio", lambda ds: setattr(ds, "LossyImageCompressionRatio", None))
    save("empty_procedure_codes", lambda ds: setattr(ds, "ProcedureCodeSequence", []))
    save("identity_removed_no_method", lambda ds: setattr(ds, "PatientIdentityRemoved", "YES"))

    def animal(ds):
        ds.PatientSpeciesDescription = "Canine"
        ds.PatientBreedDescription = "Beagle"
        ds.ResponsiblePerson = "Doe^Jane"  # without ResponsiblePersonRole

    save("animal_patient", animal)
    save("breed_without_species", lambda ds: setattr(ds, "PatientBreedDescription", "Beagle"))
    return variants


def test_every_written_seg_passes_dciodvfy(dicom_dir, segmenter_factory, dciodvfy, tmp_path):
    fixtures = sorted(p for sub in ("us", "vl") for p in (dicom_dir / sub).rglob("*.dcm"))
    variants = _defective_copies(dicom_dir, tmp_path / "defective")
    sources = fixtures + sorted(variants.values())
    hashes = {p: _sha(p) for p in sources}
    summary = run_dicom(sources, tmp_path / "out", segmenter_factory("ultrasound"), progress=False)
    assert summary.ok
    # 13 fixture files get a SEG, the 30-frame cine (no frame of reference) one frame per source frame; the 2 files
    # of the retired US SOP class highdicom does not know fall back to PNG/NIfTI with the reason; every defective
    # copy gets a SEG
    assert len(summary.processed) == 13 + len(variants)
    assert sorted(Path(e["file"]).name for e in summary.fallback) == [
        "color-px.dcm",
        "gdcm-US-RGB-8-esopecho.dcm",
    ]
    repairs_by_file = {}
    for entry in summary.processed:
        seg_path = Path(entry["output"]) / "seg.dcm"
        errors, _ = _dciodvfy(dciodvfy, seg_path)
        assert errors == [], (entry["file"], errors)
        repairs_by_file[Path(entry["file"]).name] = entry.get("seg_repairs", [])
    # which source gave which repair (shown with -s; asserted below against the sources themselves)
    for name, repairs in sorted(repairs_by_file.items()):
        print(f"{name}: {repairs or 'none'}")
    # every repair is backed by what the source has: the Type 2 patient/study attributes it lacks are named
    for path in fixtures:
        if path.name not in repairs_by_file:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        missing = [k for k in TYPE2_PATIENT_STUDY if k not in ds]
        added = [r for r in repairs_by_file[path.name] if r.startswith("added empty Type 2 ")]
        assert added == ([f"added empty Type 2 {', '.join(missing)}"] if missing else []), path.name
    assert {p: _sha(p) for p in sources} == hashes  # no source was modified
    # the defective copies: the repair is named and the SEG holds the repaired attribute
    seg_of = {Path(e["file"]).stem: pydicom.dcmread(Path(e["output"]) / "seg.dcm") for e in summary.processed}
    source_of = {name: pydicom.dcmread(path) for name, path in variants.items()}
    stored = len(source_of["lossy_empty_ratio"].PixelData)
    ratio = 480 * 640 * 3 / stored  # uncompressed bytes over the stored JPEG 2000 stream
    assert float(seg_of["lossy_empty_ratio"].LossyImageCompressionRatio) == pytest.approx(ratio, rel=1e-3)
    assert seg_of["lossy_empty_ratio"].LossyImageCompression == "01"
    assert seg_of["lossy_empty_ratio"].LossyImageCompressionMethod == "ISO_15444_1"
    assert "ProcedureCodeSequence" not in seg_of["empty_procedure_codes"]
    assert seg_of["identity_removed_no_method"].PatientIdentityRemoved == "YES"
    assert seg_of["identity_removed_no_method"].DeidentificationMethod == DEIDENTIFICATION_UNKNOWN
    animal = seg_of["animal_patient"]
    assert animal.PatientSpeciesDescription == "Canine" and animal.PatientBreedDescription == "Beagle"
    assert "PatientSexNeutered" in animal and "BreedRegistrationSequence" in animal and not animal.ResponsiblePerson
    assert "PatientBreedDescription" not in seg_of["breed_without_species"]
    expected_words = {
        "lossy_empty_ratio": "LossyImageCompressionRatio empty",
        "empty_procedure_codes": "ProcedureCodeSequence",
        "identity_removed_no_method": "DeidentificationMethod",
        "animal_patient": "animal patient",
        "breed_without_species": "breed attributes without a patient species",
    }
    for name, words in expected_words.items():
        assert any(words in r for r in repairs_by_file[f"{name}.dcm"]), (name, repairs_by_file[f"{name}.dcm"])


def test_without_the_repairs_dciodvfy_finds_the_defects(dicom_dir, dciodvfy, tmp_path, monkeypatch):
    """The control: the same defective copies, written with the repairs switched off, are invalid."""
    variants = _defective_copies(dicom_dir, tmp_path / "defective")
    monkeypatch.setattr(seg_module, "prepare_seg_source", lambda ds: (ds, []))
    expected = {
        "lossy_empty_ratio": "LossyImageCompressionRatio",
        "empty_procedure_codes": "ProcedureCodeSequence",
        "identity_removed_no_method": "DeidentificationMethod",
        "animal_patient": "PatientBreedCodeSequence",
        "breed_without_species": "PatientSpeciesDescription",
    }
    for name, path in variants.items():
        ds = pydicom.dcmread(path)
        write_seg(ds, np.zeros((ds.Rows, ds.Columns), np.uint8), tmp_path / f"{name}_seg.dcm")
        errors, _ = _dciodvfy(dciodvfy, tmp_path / f"{name}_seg.dcm")
        assert any(expected[name] in e for e in errors), (name, errors)


def test_repairs_never_change_the_source_dataset(dicom_dir):
    ds = pydicom.dcmread(dicom_dir / LOSSY)
    ds.LossyImageCompressionRatio = None
    ds.PatientIdentityRemoved = "YES"
    ds.ProcedureCodeSequence = []
    before = ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda e: "bulk")
    copy, repairs = seg_module.prepare_seg_source(ds)
    assert copy is not ds and len(repairs) >= 3
    assert ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda e: "bulk") == before
    clean = pydicom.dcmread(dicom_dir / "us/pydicom__pydicom/examples_palette.dcm")
    assert seg_module.prepare_seg_source(clean) == (clean, [])  # nothing to repair: the dataset itself
