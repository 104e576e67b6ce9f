"""`segdino dicom --also-sc --also-sr`: Secondary Capture overlays and TID 1500 SR measurement reports.

Each object is checked against an independent computation from the files written beside it (the mask PNGs) and the
source, and by dciodvfy: no error that the source itself does not have.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid

from segdino_monai.cli import main
from segdino_monai.dicom.sc import write_sc
from segdino_monai.dicom.seg import SegOptions, write_seg
from segdino_monai.dicom.source import SegUnsupportedError, prepare_seg_source
from segdino_monai.dicom.sr import segment_measurements, write_sr
from tests.conftest import BUNDLE, TINY_OVERRIDES

RGB_NO_SPACING = "us/pydicom__pydicom-data/US1_UNCR.dcm"  # RGB, uncompressed, no pixel size
US_REGIONS = "us/pydicom__pydicom-data/OBXXXX1A_rle.dcm"  # pixel size from its ultrasound region
CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30-frame JPEG cine, ultrasound regions
ROW_MM, COLUMN_MM = 0.4, 0.2622878766196998  # the anisotropic copy's region: PhysicalDeltaY 0.04 cm


def _errors(validator: str, path: Path) -> set[str]:
    result = subprocess.run([validator, str(path)], capture_output=True, text=True, check=False)
    return {line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")}


def _inputs(dicom_dir: Path, folder: Path) -> dict[str, Path]:
    """The RGB image, an anisotropic copy of the regions image, and the first 3 frames of the cine."""
    folder.mkdir()
    rgb = folder / "rgb.dcm"
    rgb.write_bytes((dicom_dir / RGB_NO_SPACING).read_bytes())
    ds = pydicom.dcmread(dicom_dir / US_REGIONS)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaY = ROW_MM / 10  # cm
    ds.save_as(folder / "anisotropic.dcm")
    cine = pydicom.dcmread(dicom_dir / CINE)
    frames = list(generate_frames(cine.PixelData, number_of_frames=int(cine.NumberOfFrames)))[:3]
    cine.PixelData, cine.NumberOfFrames = encapsulate(frames), 3
    cine.SOPInstanceUID = cine.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    cine.save_as(folder / "cine.dcm")
    return {"rgb": rgb, "anisotropic": folder / "anisotropic.dcm", "cine": folder / "cine.dcm"}


@pytest.fixture(scope="module")
def written(dicom_dir, decoder_checkpoint, tmp_path_factory):
    """``{name: (source path, output folder)}`` of one ``segdino dicom --also-sc --also-sr`` run."""
    work = tmp_path_factory.mktemp("scsr")
    inputs = _inputs(dicom_dir, work / "in")
    sets = [a for k, v in TINY_OVERRIDES.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    args = ["dicom", *map(str, inputs.values()), "-o", str(work / "out"), "--bundle-root", str(BUNDLE)]
    args += ["--backbone-weights", "random", "--checkpoint", str(decoder_checkpoint), "--modality", "ultrasound"]
    assert main([*args, "--no-progress", "--also-sc", "--also-sr", *sets]) == 0
    return {
        name: (path, work / "out" / str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID))
        for name, path in inputs.items()
    }


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _items(dataset, name: str) -> list:
    """Every content item of an SR tree whose concept name has code value ``name``, depth first."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if "ConceptNameCodeSequence" in item and item.ConceptNameCodeSequence[0].CodeValue == name:
            found.append(item)
        found += _items(item, name)
    return found


def _groups(sr) -> list:
    return _items(sr, "125007")  # Measurement Group


def _value(group, code: str) -> float | None:
    items = _items(group, code)
    return float(items[0].MeasuredValueSequence[0].NumericValue) if items else None


def _feret_from_corners(region: np.ndarray, spacing: tuple[float, float]) -> float:
    """The largest distance between two corners of the region's pixels, in mm (brute force over the hull)."""
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    rows, cols = np.nonzero(region)
    corners = np.concatenate([np.stack([rows + dr, cols + dc], 1) for dr in (0, 1) for dc in (0, 1)]).astype(float)
    physical = corners * np.asarray(spacing)
    hull = physical[ConvexHull(physical).vertices]
    return float(pdist(hull).max())


def _scoords(item) -> list:
    """The SCOORD content items directly under a content item."""
    return [child for child in item.get("ContentSequence", []) if child.ValueType == "SCOORD"]


def _points(scoord) -> np.ndarray:
    return np.asarray(scoord.GraphicData, dtype=float).reshape(-1, 2)  # (column, row)


def _boundary_centres(region: np.ndarray) -> np.ndarray:
    """SCOORD (column, row) centres of the mask's pixels that touch a background pixel (4-neighbours)."""
    from scipy.ndimage import binary_erosion

    rows, columns = np.nonzero(region & ~binary_erosion(region, border_value=0))
    return np.stack([columns + 0.5, rows + 0.5], 1)


def _assert_drawn(group, region: np.ndarray, spacing, source_uid: str, frame: int | None) -> None:
    """The group's outline and diameter SCOORDs: closed on the mask boundary, the diameter's length, the frame."""
    from scipy.spatial.distance import cdist

    (outline,) = _scoords(group)  # TID 1410 Image Region, on the source (frame)
    assert outline.ConceptNameCodeSequence[0].CodeValue == "111030" and outline.RelationshipType == "CONTAINS"
    assert outline.GraphicType == "POLYLINE"
    points = _points(outline)
    assert len(points) >= 4 and np.array_equal(points[0], points[-1])  # closed: the first point repeated
    assert cdist(points, _boundary_centres(region)).min(axis=1).max() <= 1.5
    (diameter,) = _items(group, "81827009")
    (line,) = _scoords(diameter)
    assert line.RelationshipType == "INFERRED FROM" and line.GraphicType == "POLYLINE"
    ends = _points(line)
    assert ends.shape == (2, 2)
    length = math.hypot((ends[1, 0] - ends[0, 0]) * spacing[1], (ends[1, 1] - ends[0, 1]) * spacing[0])
    assert length == pytest.approx(float(diameter.MeasuredValueSequence[0].NumericValue), rel=0.01)
    for scoord in (outline, line):
        (image,) = scoord.ContentSequence
        assert image.RelationshipType == "SELECTED FROM" and image.ValueType == "IMAGE"
        reference = image.ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == source_uid
        assert reference.get("ReferencedFrameNumber") == frame


def test_sc_pixels_are_the_overlay_of_the_written_mask(written):
    source_path, folder = written["rgb"]
    report = _report(folder)
    assert report["outputs"]["sc"] == "sc.dcm"
    sc = pydicom.dcmread(folder / "sc.dcm")
    source = pydicom.dcmread(source_path)
    mask = np.asarray(Image.open(folder / "mask.png")) > 0
    assert 0 < mask.sum() < mask.size  # a mask with both classes: the blend is tested
    # the overlay rule, written out: 45 % green over the mask (single precision, rounded half to even), the source
    # elsewhere
    expected = source.pixel_array.astype(np.float32)
    expected[mask] = 0.55 * expected[mask] + 0.45 * np.array([0, 255, 0], np.float32)
    assert np.array_equal(sc.pixel_array, np.rint(expected).astype(np.uint8))
    assert np.array_equal(sc.pixel_array, np.asarray(Image.open(folder / "overlay.png")))
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PhotometricInterpretation == "RGB"
    assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.SeriesInstanceUID != source.SeriesInstanceUID
    assert (sc.PatientName, sc.PatientID, sc.StudyDate) == (source.PatientName, source.PatientID, source.StudyDate)
    reference = sc.SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == source.SOPClassUID
    # no pixel size, no mm: no SR, and the report says why
    assert "sr" not in report["outputs"] and not (folder / "sr.dcm").exists()
    assert "pixel size is unknown" in report["sr_not_written"]


def test_sr_area_and_diameter_on_anisotropic_pixels_reference_the_seg_and_source(written):
    source_path, folder = written["anisotropic"]
    report = _report(folder)
    assert report["outputs"]["sr"] == "sr.dcm" and report["pixel_size_mm"] == pytest.approx([ROW_MM, COLUMN_MM])
    sr = pydicom.dcmread(folder / "sr.dcm")
    seg = pydicom.dcmread(folder / "seg.dcm")
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert len({sr.SeriesInstanceUID, seg.SeriesInstanceUID, source.SeriesInstanceUID}) == 3
    region = np.asarray(Image.open(folder / "mask.png")) > 0  # binary: 0 and 255
    assert 0 < region.sum() < region.size
    (group,) = _groups(sr)
    assert _value(group, "42798000") == pytest.approx(region.sum() * ROW_MM * COLUMN_MM, rel=1e-9)  # Area, mm2
    diameter = _value(group, "81827009")  # Diameter (derivation Maximum), mm
    corners = _feret_from_corners(region, (ROW_MM, COLUMN_MM))
    assert corners - max(ROW_MM, COLUMN_MM) <= diameter <= corners + 1e-9
    assert _items(group, "121401")[0].ConceptCodeSequence[0].CodeValue == "56851009"  # Derivation: Maximum
    # drawn on the source: the outline (TID 1410 Image Region) and the diameter's end points, in pixel coordinates
    _assert_drawn(group, region, (ROW_MM, COLUMN_MM), source.SOPInstanceUID, None)
    assert _items(group, "121214") == []  # TID 1410 references one region: the outline; the SEG is in the evidence
    evidence = {
        item.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert evidence == {seg.SOPInstanceUID, source.SOPInstanceUID}


def test_cine_gets_one_sc_per_frame_and_one_measurement_group_per_frame(written):
    source_path, folder = written["cine"]
    report = _report(folder)
    assert report["outputs"]["sc"] == ["sc_0001.dcm", "sc_0002.dcm", "sc_0003.dcm"]
    series = set()
    for number, name in enumerate(report["outputs"]["sc"], start=1):
        sc = pydicom.dcmread(folder / name)
        series.add(sc.SeriesInstanceUID)
        assert sc.InstanceNumber == number and sc.SourceImageSequence[0].ReferencedFrameNumber == number
        overlay = np.asarray(Image.open(folder / f"frame_{number:04d}_overlay.png"))
        assert np.array_equal(sc.pixel_array, overlay)
    assert len(series) == 1
    seg = pydicom.dcmread(folder / "seg.dcm")
    sr = pydicom.dcmread(folder / "sr.dcm")
    source = pydicom.dcmread(source_path, stop_before_pixels=True)
    spacing = report["pixel_size_mm"]
    groups = _groups(sr)
    assert len(groups) == 3
    for number, group in enumerate(groups, start=1):
        mask = np.asarray(Image.open(folder / f"frame_{number:04d}_mask.png")) > 0
        assert _value(group, "42798000") == pytest.approx(mask.sum() * spacing[0] * spacing[1], rel=1e-9)
        if mask.any():  # drawn on its own source frame
            _assert_drawn(group, mask, spacing, source.SOPInstanceUID, number)
        else:  # nothing to draw: the SEG frame of this source frame is referenced
            seg_frame = int(_items(group, "121214")[0].ReferencedSOPSequence[0].ReferencedFrameNumber)
            derivation = seg.PerFrameFunctionalGroupsSequence[seg_frame - 1].DerivationImageSequence[0]
            assert derivation.SourceImageSequence[0].ReferencedFrameNumber == number
    # one tracking UID per frame: a viewer merges the groups of one tracking UID into one annotation
    assert len({_items(group, "112040")[0].UID for group in groups}) == 3


def test_every_sc_and_sr_passes_dciodvfy_as_well_as_its_source(written, dciodvfy):
    checked = 0
    for source_path, folder in written.values():
        allowed = _errors(dciodvfy, source_path)
        for path in sorted(folder.glob("s[cr]*.dcm")):
            assert _errors(dciodvfy, path) <= allowed, (path.name, _errors(dciodvfy, path) - allowed)
            checked += 1
    assert checked == 1 + 2 + 4  # rgb: SC; anisotropic: SC, SR; cine: 3 SC, SR


def _uid_roots(errors: set[str]) -> set[str]:
    """The UIDs that dciodvfy calls illegal, wherever they are (the source's own UID, or a reference to it)."""
    return {e.split('"')[1] for e in errors if e.startswith("Error - Illegal root for UID")}


def test_sc_and_sr_of_every_fixture_pass_dciodvfy_as_well_as_their_source(dicom_dir, dciodvfy, tmp_path):
    """Without the model: a fixed mask on every US and VL fixture (2 frames of the cine for the SC)."""
    options = SegOptions()
    for number, path in enumerate(sorted(p for sub in ("us", "vl") for p in (dicom_dir / sub).rglob("*.dcm"))):
        ds = pydicom.dcmread(path)
        before = pydicom.dcmread(path)
        source, _ = prepare_seg_source(ds)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        mask = np.zeros((ds.Rows, ds.Columns), np.uint8)
        mask[ds.Rows // 4 : ds.Rows // 2, ds.Columns // 3 : ds.Columns // 2] = 1
        image = np.zeros((ds.Rows, ds.Columns, 3), np.uint8)
        folder = tmp_path / str(number)
        folder.mkdir()
        numbers = [None] if frames == 1 else list(range(1, frames + 1))
        written = write_sc(source, [(n, image, mask) for n in numbers[:2]], folder)
        try:
            write_seg(source, mask if frames == 1 else np.stack([mask] * frames), folder / "seg.dcm")
        except SegUnsupportedError:  # the retired US class: an SC, but no SEG and so no SR
            assert path.name in ("color-px.dcm", "gdcm-US-RGB-8-esopecho.dcm")
        else:
            write_sr(source, folder / "seg.dcm", [(n, mask) for n in numbers], (0.3, 0.2), folder / "sr.dcm", options)
            written.append("sr.dcm")
        allowed = _errors(dciodvfy, path)
        for name in written:
            extra = _errors(dciodvfy, folder / name) - allowed
            # a reference to a source UID that dciodvfy finds illegal in the source is the source's error
            unexplained = {e for e in extra if not (_uid_roots({e}) and _uid_roots({e}) <= _uid_roots(allowed))}
            assert not unexplained, (path.name, name, unexplained)
        assert ds == before, path.name  # the source dataset is not changed


def test_sc_uids_are_derived_from_the_source_and_its_seg(written, tmp_path):
    source_path, folder = written["anisotropic"]
    seg_uid = str(pydicom.dcmread(folder / "seg.dcm", stop_before_pixels=True).SOPInstanceUID)
    source, _ = prepare_seg_source(pydicom.dcmread(source_path))
    mask = (np.asarray(Image.open(folder / "mask.png")) > 0).astype(np.uint8)
    image = np.zeros((*mask.shape, 3), np.uint8)
    first = pydicom.dcmread(folder / "sc.dcm", stop_before_pixels=True)
    (name,) = write_sc(source, [(None, image, mask)], tmp_path, seg_uid)
    again = pydicom.dcmread(tmp_path / name, stop_before_pixels=True)
    assert (again.SOPInstanceUID, again.SeriesInstanceUID) == (first.SOPInstanceUID, first.SeriesInstanceUID)
    (tmp_path / "other").mkdir()
    write_sc(source, [(None, image, mask)], tmp_path / "other", generate_uid())  # a new SEG: new objects
    assert pydicom.dcmread(tmp_path / "other" / name).SOPInstanceUID != first.SOPInstanceUID


@pytest.mark.parametrize(("spacing", "height", "width"), [((0.2, 0.35), 20, 30), ((1.0, 1.0), 1, 7)])
def test_segment_measurements_of_a_rectangle(spacing, height, width):
    mask = np.zeros((40, 50), np.uint8)
    mask[5 : 5 + height, 10 : 10 + width] = 2
    area, diameter = segment_measurements(mask, 2, spacing)
    assert area == pytest.approx(height * width * spacing[0] * spacing[1])
    # skimage's Feret diameter: between the middles of the outer edges of the boundary pixels of the convex hull
    sy, sx = spacing
    expected = max(math.hypot(height * sy, (width - 1) * sx), math.hypot((height - 1) * sy, width * sx))
    assert diameter == pytest.approx(expected)
    assert segment_measurements(mask, 1, spacing) == (0.0, None)


def test_a_labelmap_seg_gets_no_sr_and_the_report_says_why(dicom_dir, decoder_checkpoint, tmp_path):
    source = dicom_dir / "us/pydicom__pydicom/examples_palette.dcm"  # calibrated: only the LABELMAP stops the SR
    sets = [a for k, v in TINY_OVERRIDES.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    args = ["dicom", str(source), "-o", str(tmp_path / "out"), "--bundle-root", str(BUNDLE), "--modality"]
    args += ["ultrasound", "--backbone-weights", "random", "--checkpoint", str(decoder_checkpoint), "--no-progress"]
    assert main([*args, "--labelmap", "--also-sr", *sets]) == 0
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    report = _report(folder)
    assert report["outputs"]["seg"] == "seg.dcm" and report["pixel_size_mm"] and "sr" not in report["outputs"]
    assert "BINARY SEG" in report["sr_not_written"] and not (folder / "sr.dcm").exists()
    with pytest.raises(ValueError, match="LABELMAP"):
        masks = [(None, np.zeros((350, 800), np.uint8))]
        write_sr(pydicom.dcmread(source), folder / "seg.dcm", masks, (1, 1), folder / "x", SegOptions())


def test_sr_of_a_cine_draws_each_frame_on_its_source_frame(dicom_dir, dciodvfy, tmp_path):
    """Without the model: fixed masks on 3 cine frames (two parts with a hole, a disc, nothing), anisotropic pixels."""
    from skimage.draw import disk
    from skimage.measure import regionprops

    source, _ = prepare_seg_source(pydicom.dcmread(_inputs(dicom_dir, tmp_path / "in")["cine"]))
    shape = (int(source.Rows), int(source.Columns))
    masks = np.zeros((3, *shape), np.uint8)
    masks[0, 40:120, 60:200] = 1
    masks[0, 70:90, 100:150] = 0  # a hole
    masks[0, 150:170, 250:260] = 1  # a second, smaller part
    masks[1][disk((200, 300), 45, shape=shape)] = 1
    spacing = (ROW_MM, COLUMN_MM)
    write_seg(source, masks, tmp_path / "seg.dcm")
    numbered = [(n, masks[n - 1]) for n in (1, 2, 3)]
    write_sr(source, tmp_path / "seg.dcm", numbered, spacing, tmp_path / "sr.dcm", SegOptions())
    sr = pydicom.dcmread(tmp_path / "sr.dcm")
    groups = _groups(sr)
    assert len(groups) == 3
    for number, group in zip((1, 2), groups, strict=False):
        _assert_drawn(group, masks[number - 1] == 1, spacing, source.SOPInstanceUID, number)
        feret = regionprops(masks[number - 1], spacing=spacing)[0].feret_diameter_max
        assert _value(group, "81827009") == pytest.approx(feret, rel=1e-9)  # the diameter as before
    outline = _points(_scoords(groups[0])[0])  # the larger part: its outline spans it
    assert outline[:, 0].min() == pytest.approx(60, abs=1) and outline[:, 0].max() == pytest.approx(200, abs=1)
    assert _scoords(groups[2]) == [] and _value(groups[2], "81827009") is None  # empty: area 0, no drawing
    assert _value(groups[2], "42798000") == 0
    assert _errors(dciodvfy, tmp_path / "sr.dcm") <= _errors(dciodvfy, dicom_dir / CINE)
