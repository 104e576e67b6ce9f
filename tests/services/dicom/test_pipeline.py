from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

import segdino_monai
from segdino_monai.cli import main
from segdino_monai.services.dicom_batch import run_dicom
from tests.conftest import BUNDLE, TINY_OVERRIDES

US_SINGLE = "us/pydicom__pydicom/examples_palette.dcm"  # has US regions: crop + physical size
VL = "vl/ivmartel__dwv/nema-vl2_j2kr.dcm"
CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"


def _cli_args(out: Path, checkpoint: Path, modality: str) -> list[str]:
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY_OVERRIDES.items()]
    return ["dicom", "-o", str(out), "--bundle-root", str(BUNDLE), "--backbone-weights", "random",
            "--checkpoint", str(checkpoint), "--modality", modality, "--no-progress",
            *[a for s in sets for a in ("--set", s)]]  # fmt: skip


def _errors(validator: str, path: Path) -> list[str]:
    result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize(
    ("relative", "modality", "task_code"), [(US_SINGLE, "ultrasound", "52988006"), (VL, "endoscopy", "41329004")]
)
def test_seg_round_trip(dicom_dir, segmenter_factory, dciodvfy, tmp_path, relative, modality, task_code):
    source = dicom_dir / relative
    before = source.read_bytes()
    segmenter = segmenter_factory(modality)
    summary = run_dicom([source], tmp_path / "out", segmenter, progress=False)
    assert summary.ok and len(summary.processed) == 1
    ds = pydicom.dcmread(source)
    folder = tmp_path / "out" / ds.SOPInstanceUID
    report = json.loads((folder / "report.json").read_text())
    # the prediction, recomputed independently on the same image, is what the SEG and PNG hold
    expected = segmenter(source)
    assert 0 < expected.sum() < expected.size  # a real mask: neither empty nor full
    seg = hd.seg.segread(folder / "seg.dcm")
    stored = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID], segment_numbers=[1])
    assert np.array_equal(np.asarray(stored)[0, ..., 0].astype(np.uint8), expected)
    png = np.asarray(Image.open(folder / "mask.png"))
    assert np.array_equal(png > 0, expected > 0)
    # references point at the source's own UIDs; the source is untouched
    assert seg.StudyInstanceUID == ds.StudyInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ds.SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    derivation = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert derivation.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert source.read_bytes() == before
    # descriptions
    segment = seg.SegmentSequence[0]
    assert seg.SegmentationType == "BINARY" and seg.Rows == ds.Rows and seg.Columns == ds.Columns
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == task_code
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"  # the model's own mask
    assert algorithm.AlgorithmName == "SegDINO" and segdino_monai.__version__ in algorithm.AlgorithmVersion
    assert algorithm.AlgorithmFamilyCodeSequence[0].CodeValue == "123110"
    assert seg.SeriesDescription == "SegDINO segmentation" and seg.SeriesNumber == 901
    assert str(seg.ContentCreatorName) == "SegDINO^Algorithm"
    # same required structure as established SEGs; an independent validator finds no errors
    reference = pydicom.dcmread(dicom_dir / "seg/ImagingDataCommons__highdicom/seg_image_cr_binary.dcm")
    required = {  # Segmentation IOD: SOP Common, General Series, Segmentation Series, General Equipment, Enhanced
        # General Equipment, General Image, Image Pixel, Multi-frame Functional Groups/Dimension, Segmentation Image
        "SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "SeriesNumber", "Manufacturer",
        "ManufacturerModelName", "SoftwareVersions", "DeviceSerialNumber", "InstanceNumber", "ImageType",
        "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
        "PixelRepresentation", "LossyImageCompression", "SegmentationType", "SegmentSequence", "ContentLabel",
        "ContentDate", "ContentTime", "ContentCreatorName", "NumberOfFrames", "SharedFunctionalGroupsSequence",
        "PerFrameFunctionalGroupsSequence", "DimensionIndexSequence", "DimensionOrganizationSequence",
        "ReferencedSeriesSequence", "SourceImageSequence", "PixelData",
    }  # fmt: skip
    assert required <= {e.keyword for e in reference}, required - {e.keyword for e in reference}
    assert required <= {e.keyword for e in seg}, required - {e.keyword for e in seg}
    assert _errors(dciodvfy, folder / "seg.dcm") == []
    # areas
    areas = report["segments"][0]["areas"][0]
    assert areas["area_pixels"] == int(expected.sum())
    if modality == "ultrasound":
        assert areas["area_mm2"] == pytest.approx(expected.sum() * 0.26228787661969977**2, rel=1e-4)
        nifti = nib.load(folder / "mask.nii.gz")
        assert nifti.header.get_zooms()[:2] == pytest.approx((0.26228787661969977,) * 2)
        assert np.array_equal(np.asarray(nifti.dataobj).T, expected)
    else:
        assert areas["area_mm2"] is None and report["area_unit"].startswith("pixels")


def test_ultrasound_crop_is_inverted_to_background(dicom_dir, segmenter_factory):
    source = dicom_dir / US_SINGLE  # region rows 60.., columns 120..: outside is padding, never foreground
    mask = segmenter_factory("ultrasound")(source)
    assert mask.shape == (350, 800)
    assert mask[:60].sum() == 0 and mask[:, :120].sum() == 0 and mask[60:, 120:].sum() > 0


def test_cine_gives_per_frame_fallback(dicom_dir, segmenter_factory, tmp_path):
    source = dicom_dir / CINE
    summary = run_dicom([source], tmp_path / "out", segmenter_factory("ultrasound"), frames=[1, 15, 30], progress=False)
    assert summary.ok and not summary.processed and len(summary.fallback) == 1
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    folder = tmp_path / "out" / ds.SOPInstanceUID
    assert not (folder / "seg.dcm").exists()
    sidecar = json.loads((folder / "frames.json").read_text())
    assert sidecar["SOPInstanceUID"] == ds.SOPInstanceUID and sidecar["number_of_frames"] == 30
    assert [f["frame_number"] for f in sidecar["frames"]] == [1, 15, 30]
    for frame in sidecar["frames"]:
        mask = np.asarray(Image.open(folder / frame["mask_png"]))
        assert mask.shape == (240, 320) and set(np.unique(mask)) <= {0, 255}
        assert (folder / frame["overlay_png"]).is_file()
    assert nib.load(folder / "mask.nii.gz").shape == (320, 240, 3)
    assert "only some frames" in sidecar["reason"]
    # with every frame, the cine gets a SEG (tests/dicom/test_seg_frames.py): only a subset falls back


def test_mixed_folder_bad_files_rerun_and_overwrite(dicom_dir, decoder_checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(dicom_dir / VL, inputs / "endoscopy.dcm")
    shutil.copy(dicom_dir / "us/pydicom__pydicom/ExplVR_BigEnd.dcm", inputs / "big_endian.dcm")
    data = (dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm").read_bytes()
    (inputs / "sub").mkdir()
    (inputs / "sub" / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (inputs / "sub" / "notes.dcm").write_text("not a DICOM file at all\n" * 10)
    shutil.copy(dicom_dir / "seg/ImagingDataCommons__highdicom/seg_image_cr_binary.dcm", inputs / "sub" / "seg.dcm")
    snapshot = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    args = [str(inputs), *_cli_args(out, decoder_checkpoint, "endoscopy")]
    assert main([args[1], args[0], *args[2:]]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"processed": 2, "fallback": 0, "done": 0, "skipped": 3, "failed": 0}
    reasons = {Path(s["file"]).name: s["reason"] for s in summary["skipped"]}
    assert "not a DICOM file" in reasons["notes.dcm"]
    assert "segmentation" in reasons["seg.dcm"]
    assert "truncated.dcm" in reasons and reasons["truncated.dcm"]
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    uids = sorted(
        pydicom.dcmread(inputs / n, stop_before_pixels=True).SOPInstanceUID for n in ("endoscopy.dcm", "big_endian.dcm")
    )
    assert folders == uids  # nothing partial, nothing for the bad files
    assert all((out / f / "seg.dcm").is_file() and (out / f / "report.json").is_file() for f in folders)
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == snapshot
    # rerun: done ones skipped
    stamp = (out / uids[0] / "seg.dcm").stat().st_mtime_ns
    assert main([args[1], args[0], *args[2:]]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["done"] == 2 and summary["counts"]["processed"] == 0
    assert (out / uids[0] / "seg.dcm").stat().st_mtime_ns == stamp
    # --overwrite redoes them: SEGs written again, with the same UIDs (derived from the source and the model, so a
    # PACS that receives them again replaces its copy)
    old = pydicom.dcmread(out / uids[0] / "seg.dcm")
    assert main([args[1], args[0], *args[2:], "--overwrite"]) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["processed"] == 2 and summary["counts"]["done"] == 0
    assert (out / uids[0] / "seg.dcm").stat().st_mtime_ns != stamp
    new = pydicom.dcmread(out / uids[0] / "seg.dcm")
    assert (new.SOPInstanceUID, new.SeriesInstanceUID) == (old.SOPInstanceUID, old.SeriesInstanceUID)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_missing_weights_is_a_clear_error(tmp_path, decoder_checkpoint, dicom_dir, capsys):
    args = _cli_args(tmp_path / "out", decoder_checkpoint, "endoscopy")
    args[args.index("random")] = str(tmp_path / "missing.pth")
    assert main([args[0], str(dicom_dir / VL), *args[1:]]) == 2
    captured = capsys.readouterr()  # the bundle's logging.conf sends log records to stdout
    assert "DINOv3 backbone weights not found" in captured.out + captured.err
    assert "missing.pth" in captured.out + captured.err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
