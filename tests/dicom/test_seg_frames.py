"""A multi-frame source without a frame of reference (ultrasound cine) gets a DICOM SEG: one SEG frame per segment
and source frame, each referencing its source frame; dciodvfy accepts it and highdicom reads it back to the masks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from segdino_monai.dicom.seg import SegOptions, write_seg
from segdino_monai.dicom.seg_frames import TEMPORAL_POSITION_INDEX, needs_frame_references
from segdino_monai.services.dicom_batch import run_dicom

CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30 frames, YBR_FULL_422 JPEG, no frame of reference


def _errors(validator: str, path: Path) -> list[str]:
    result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def _multi_frame_fixtures(dicom_dir: Path) -> list[Path]:
    files = sorted(p for sub in ("us", "vl") for p in (dicom_dir / sub).rglob("*.dcm"))
    return [p for p in files if int(pydicom.dcmread(p, stop_before_pixels=True).get("NumberOfFrames", 1) or 1) > 1]


def test_every_multi_frame_fixture_gets_a_frame_referenced_seg(dicom_dir, segmenter_factory, dciodvfy, tmp_path):
    sources = _multi_frame_fixtures(dicom_dir)
    assert [p.relative_to(dicom_dir).as_posix() for p in sources] == [CINE]  # the fixtures' only cine, so far
    summary = run_dicom(sources, tmp_path / "out", segmenter_factory("ultrasound"), progress=False)
    assert summary.ok and len(summary.processed) == len(sources) and not summary.fallback
    for source in sources:
        ds = pydicom.dcmread(source, stop_before_pixels=True)
        assert needs_frame_references(ds)  # highdicom alone refuses it: no frame of reference
        frames = int(ds.NumberOfFrames)
        folder = tmp_path / "out" / ds.SOPInstanceUID
        report = json.loads((folder / "report.json").read_text())
        assert report["outputs"]["seg"] == "seg.dcm" and "seg_not_written" not in report
        assert not (folder / "frames.json").exists()
        seg = pydicom.dcmread(folder / "seg.dcm")
        # frame count: one per segment (BINARY, one segment) and source frame
        assert seg.NumberOfFrames == frames and seg.SegmentationType == "BINARY"
        assert (seg.Rows, seg.Columns) == (ds.Rows, ds.Columns) and "FrameOfReferenceUID" not in seg
        # per-frame references: SEG frame k is derived from source frame k of this very instance
        for number, item in enumerate(seg.PerFrameFunctionalGroupsSequence, start=1):
            reference = item.DerivationImageSequence[0].SourceImageSequence[0]
            assert reference.ReferencedSOPInstanceUID == ds.SOPInstanceUID
            assert reference.ReferencedSOPClassUID == ds.SOPClassUID  # the source's class, not the view's
            assert int(reference.ReferencedFrameNumber) == number
            assert reference.PurposeOfReferenceCodeSequence[0].CodeValue == "121322"
            assert item.DerivationImageSequence[0].DerivationCodeSequence[0].CodeValue == "113076"
            content = item.FrameContentSequence[0]
            assert content.TemporalPositionIndex == number and list(content.DimensionIndexValues) == [1, number]
        pointers = [int(d.DimensionIndexPointer) for d in seg.DimensionIndexSequence]
        assert pointers == [0x0062000B, TEMPORAL_POSITION_INDEX]  # segment number, then source frame
        instance = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ds.SeriesInstanceUID
        assert instance.ReferencedSOPInstanceUID == ds.SOPInstanceUID
        assert instance.ReferencedSOPClassUID == ds.SOPClassUID
        assert seg.SourceImageSequence[0].ReferencedSOPClassUID == ds.SOPClassUID
        assert _errors(dciodvfy, folder / "seg.dcm") == []
        # highdicom reads it back to the masks the run wrote as PNG and NIfTI, frame by frame
        pngs = np.stack([np.asarray(Image.open(folder / f"frame_{k:04d}_mask.png")) > 0 for k in range(1, frames + 1)])
        assert 0 < pngs.sum() < pngs.size
        assert np.array_equal(np.asarray(nib.load(folder / "mask.nii.gz").dataobj).T > 0, pngs)
        read = hd.seg.segread(folder / "seg.dcm")
        stored = read.get_pixels_by_source_frame(ds.SOPInstanceUID, list(range(1, frames + 1)), combine_segments=True)
        assert np.array_equal(stored > 0, pngs)
        some = read.get_pixels_by_source_frame(ds.SOPInstanceUID, [17, 3], combine_segments=True)
        assert np.array_equal(some > 0, pngs[[16, 2]])


@pytest.mark.parametrize("segmentation_type", ["BINARY", "LABELMAP"])
def test_multi_class_cine_seg_reads_back(dicom_dir, dciodvfy, tmp_path, segmentation_type):
    source = dicom_dir / CINE
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    rng = np.random.default_rng(0)
    masks = rng.integers(0, 3, size=(30, 240, 320), dtype=np.uint8)  # classes 0, 1, 2; every frame different
    path = write_seg(source, masks, tmp_path / "seg.dcm", SegOptions(segmentation_type=segmentation_type), 2)
    seg = pydicom.dcmread(path)
    assert seg.NumberOfFrames == (60 if segmentation_type == "BINARY" else 30)
    numbers = [int(i.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
               for i in seg.PerFrameFunctionalGroupsSequence]  # fmt: skip
    per_source_frame = 2 if segmentation_type == "BINARY" else 1  # BINARY: one SEG frame per segment
    assert numbers == [k for k in range(1, 31) for _ in range(per_source_frame)]
    read = hd.seg.segread(path)
    stored = read.get_pixels_by_source_frame(ds.SOPInstanceUID, list(range(1, 31)), combine_segments=True)
    assert np.array_equal(stored, masks)
    if segmentation_type == "BINARY":
        assert _errors(dciodvfy, path) == []
    else:  # this dciodvfy does not know the Label Map Segmentation SOP class: the same errors as a single frame's
        single = write_seg(dicom_dir / "us/pydicom__pydicom/examples_rgb_color.dcm", masks[0], tmp_path / "one.dcm",
                           SegOptions(segmentation_type="LABELMAP"), 2)  # fmt: skip
        assert _errors(dciodvfy, path) == _errors(dciodvfy, single)


def test_masks_must_fit_every_frame(dicom_dir, tmp_path):
    with pytest.raises(ValueError, match=r"mask shape \(29, 240, 320\) does not fit"):
        write_seg(dicom_dir / CINE, np.zeros((29, 240, 320), np.uint8), tmp_path / "seg.dcm")
    assert not (tmp_path / "seg.dcm").exists()
