"""Every SEG we write has the plane geometry viewers read unconditionally (OHIF 3's SEG viewport blanks without it).

Shared functional groups: Pixel Measures (the source's pixel size, read here independently from its PixelSpacing or
ultrasound region, else 1\\1 with the reason in report.json) and Plane Orientation; per frame: a Plane Position. For
single-frame sources, the multi-frame cine without a frame of reference, BINARY and LABELMAP, and MONAI Label's
final-label SEG. The pixels read back unchanged, and dciodvfy finds no error in the BINARY SEGs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from segdino_monai.apps.monailabel.label_seg import write_label_seg
from segdino_monai.dicom.seg import SegOptions, write_seg
from segdino_monai.services.dicom_batch import run_dicom

US_REGIONS = "us/pydicom__pydicom-data/OBXXXX1A_rle.dcm"  # one calibrated ultrasound region (cm)
NO_SPACING = "us/pydicom__pydicom-data/US1_UNCR.dcm"  # RGB, no pixel size
CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30 frames, ultrasound regions, no frame of reference


def _errors(validator: str, path: Path) -> list[str]:
    result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]


def _region_spacing(path: Path) -> list[float]:
    """(row, column) mm of the first region with cm units (PhysicalUnits 3): PhysicalDeltaY/X x 10."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    region = next(r for r in ds.SequenceOfUltrasoundRegions if int(r.PhysicalUnitsXDirection) == 3)
    return [float(region.PhysicalDeltaY) * 10, float(region.PhysicalDeltaX) * 10]


def _mask(shape: tuple[int, ...], classes: int = 1) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[..., 20:70, 30:90] = 1
    if classes > 1:
        mask[..., 40:60, 100:130] = 2
    if len(shape) == 3:  # a different mask on each frame
        for index in range(shape[0]):
            mask[index, 5 : 6 + index, 5:15] = 1
    return mask


def _assert_geometry(seg, spacing: list[float], frames: int) -> None:
    shared = seg.SharedFunctionalGroupsSequence[0]
    (measures,) = shared.PixelMeasuresSequence
    assert [float(v) for v in measures.PixelSpacing] == pytest.approx(spacing, rel=1e-9)
    assert float(measures.SliceThickness) == 1 and float(measures.SpacingBetweenSlices) == 1
    (orientation,) = shared.PlaneOrientationSequence
    assert [float(v) for v in orientation.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert int(seg.NumberOfFrames) == len(seg.PerFrameFunctionalGroupsSequence) == frames
    for item in seg.PerFrameFunctionalGroupsSequence:  # one position per frame
        (position,) = item.PlanePositionSequence
        assert [float(v) for v in position.ImagePositionPatient] == [0, 0, 0]


@pytest.mark.parametrize("segmentation_type", ["BINARY", "LABELMAP"])
def test_single_frame_and_cine_segs_have_plane_geometry(dicom_dir, dciodvfy, tmp_path, segmentation_type):
    cases = {US_REGIONS: _region_spacing(dicom_dir / US_REGIONS), NO_SPACING: [1.0, 1.0]}
    cases[CINE] = _region_spacing(dicom_dir / CINE)
    for name, spacing in cases.items():
        source = pydicom.dcmread(dicom_dir / name)
        frames = int(source.get("NumberOfFrames", 1) or 1)
        shape = (source.Rows, source.Columns) if frames == 1 else (frames, source.Rows, source.Columns)
        mask = _mask(shape, classes=2)
        out = tmp_path / f"{Path(name).stem}_{segmentation_type}.dcm"
        write_seg(source, mask, out, SegOptions(segmentation_type=segmentation_type), num_segments=2)
        seg = pydicom.dcmread(out)
        per_frame = 2 if segmentation_type == "BINARY" else 1  # SEG frames per source frame
        _assert_geometry(seg, spacing, frames * per_frame)
        assert "FrameOfReferenceUID" not in seg  # none in the source: the positions stand on the pixel grid
        # the pixels are unchanged: highdicom reads the masks back frame by frame
        back = hd.seg.Segmentation.from_dataset(seg)
        uid = source.SOPInstanceUID
        if frames == 1:
            labels = back.get_pixels_by_source_instance([uid], combine_segments=True, relabel=False)
        else:
            numbers = list(range(1, frames + 1))
            labels = back.get_pixels_by_source_frame(
                uid, source_frame_numbers=numbers, combine_segments=True, relabel=False
            )
        assert np.array_equal(labels, mask.reshape(frames, *mask.shape[-2:]))
        if segmentation_type == "BINARY":  # dciodvfy does not know the Label Map Segmentation SOP class
            assert _errors(dciodvfy, out) == []


def test_a_source_with_a_frame_of_reference_but_no_positions(dicom_dir, dciodvfy, tmp_path):
    ds = pydicom.dcmread(dicom_dir / US_REGIONS)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = generate_uid(), ""
    out = tmp_path / "seg.dcm"
    write_seg(ds, _mask((ds.Rows, ds.Columns)), out)
    seg = pydicom.dcmread(out)
    assert seg.FrameOfReferenceUID == ds.FrameOfReferenceUID
    _assert_geometry(seg, _region_spacing(dicom_dir / US_REGIONS), 1)
    assert _errors(dciodvfy, out) == []


def test_monai_label_final_label_seg_has_plane_geometry(dicom_dir, tmp_path):
    source = dicom_dir / US_REGIONS
    ds = pydicom.dcmread(source, stop_before_pixels=True)
    mask = _mask((ds.Rows, ds.Columns))
    label = tmp_path / "label.png"
    Image.fromarray(mask).save(label)
    out = write_label_seg(source, label, tmp_path / "label_seg.dcm", "ultrasound")
    _assert_geometry(pydicom.dcmread(out), _region_spacing(source), 1)


def test_the_report_records_the_seg_spacing_and_why_it_is_1x1(dicom_dir, segmenter_factory, tmp_path):
    sources = [dicom_dir / US_REGIONS, dicom_dir / NO_SPACING]
    summary = run_dicom(sources, tmp_path / "out", segmenter_factory("ultrasound"), progress=False)
    assert summary.ok and len(summary.processed) == 2
    for source, spacing, origin in zip(sources, [_region_spacing(sources[0]), [1.0, 1.0]], ["Seq", None], strict=True):
        uid = pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID
        folder = tmp_path / "out" / str(uid)
        geometry = json.loads((folder / "report.json").read_text())["seg_geometry"]
        assert geometry["pixel_spacing_mm"] == pytest.approx(spacing)
        seg = pydicom.dcmread(folder / "seg.dcm")
        measured = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert [float(v) for v in measured] == pytest.approx(spacing)
        if origin is None:
            assert geometry["pixel_spacing_source"] is None and "pixel size unknown" in geometry["note"]
        else:
            assert geometry["pixel_spacing_source"] == "SequenceOfUltrasoundRegions" and geometry["note"] is None
