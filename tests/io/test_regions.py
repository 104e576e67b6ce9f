"""The Sequence of Ultrasound Regions rule: the largest 2D region and its pixel size (io/ultrasound_regions.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import LoadImaged
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from segdino_monai.io.dicom_reader import DicomReader, pixel_size_mm, ultrasound_region_from_dicom
from segdino_monai.io.images import SegDINOImageReader
from segdino_monai.io.ultrasound_regions import ultrasound_region
from segdino_monai.transforms import UltrasoundRegionCrop, UltrasoundRegionCropd

CM, SECONDS = 3, 4
TISSUE_2D, SPECTRAL, WAVEFORM = 1, 3, 4

# the fixture ultrasound files that declare regions: (start, end) of the image region and its pixel size in mm
FIXTURE_REGIONS = {
    "pydicom__pydicom/examples_palette.dcm": (([60, 120], [350, 800]), 0.26228787661969977),
    "pydicom__pydicom/examples_ybr_color.dcm": (([31, 84], [240, 320]), 0.5104970559477806),
    "pydicom__pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm": (([38, 14], [759, 1011]), 0.25476696592378156),
    "pydicom__pydicom-data/OBXXXX1A.dcm": (([60, 120], [519, 800]), 0.26228787661969977),
    "pydicom__pydicom-data/OBXXXX1A_rle.dcm": (([60, 120], [519, 800]), 0.26228787661969977),
    # dual display: two equal 2D regions side by side (columns 32-335 and 336-639); the first one is kept
    "pydicom__pydicom-data/gdcm-US-ALOKA-16.dcm": (([24, 32], [416, 336]), 0.3826530650258064),
}


def _region(box: tuple[int, int, int, int], spatial_format: int = TISSUE_2D, delta: float = 0.01, units=CM) -> Dataset:
    """A region over rows ``box[0]..box[2]`` and columns ``box[1]..box[3]`` (inclusive, as DICOM has it)."""
    region = Dataset()
    region.RegionSpatialFormat = spatial_format
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinY0, region.RegionLocationMinX0, region.RegionLocationMaxY1, region.RegionLocationMaxX1 = box
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = units
    region.PhysicalDeltaX = region.PhysicalDeltaY = delta
    return region


def _dataset(regions: list[Dataset], rows: int = 100, cols: int = 160) -> Dataset:
    ds = Dataset()
    ds.Rows, ds.Columns = rows, cols
    ds.SequenceOfUltrasoundRegions = regions
    return ds


def _write_us(path: Path, regions: list[Dataset], rows: int = 100, cols: int = 160) -> np.ndarray:
    """A single-frame 8-bit grey ultrasound file with these regions; returns its pixels."""
    ds = _dataset(regions, rows, cols)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "US"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    pixels = (np.arange(rows * cols) % 251).astype(np.uint8).reshape(rows, cols)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return pixels


def test_fixture_files_regions_follow_the_rule(dicom_dir: Path) -> None:
    for path in sorted((dicom_dir / "us").rglob("*.dcm")):
        name = str(path.relative_to(dicom_dir / "us"))
        header = pydicom.dcmread(path, stop_before_pixels=True)
        image = LoadImaged("image", reader=DicomReader(frame=1))({"image": str(path)})["image"]
        if name not in FIXTURE_REGIONS:
            assert "SequenceOfUltrasoundRegions" not in header, name
            assert ultrasound_region(header) is None and ultrasound_region_from_dicom(path) is None, name
            assert "ultrasound_region" not in image.meta and "pixel_size_mm" not in image.meta, name
            continue
        box, size = FIXTURE_REGIONS[name]
        assert ultrasound_region_from_dicom(path) == box, name
        assert ultrasound_region(header).pixel_size_mm == pytest.approx((size, size)), name
        # the reader's crop meta and pixel size come from the same region
        assert image.meta["ultrasound_region"] == box, name
        assert image.meta["pixel_size_mm"] == pytest.approx([size, size]), name
        assert image.meta["pixel_size_source"] == "SequenceOfUltrasoundRegions", name
        assert float(image.affine[0, 0]) == pytest.approx(size) and float(image.affine[1, 1]) == pytest.approx(size)


def test_b_mode_with_a_small_2d_strip_keeps_the_b_mode_and_its_pixel_size() -> None:
    # a B-mode image (rows 10-79, columns 20-119) and, to its right, a colour bar tagged as a 2D region with another
    # scale: the union would stretch the crop over the text between them and over the bar
    ds = _dataset([_region((10, 20, 79, 119), delta=0.02), _region((10, 140, 79, 149), delta=0.5)])
    region = ultrasound_region(ds)
    assert (region.start, region.end) == ((10, 20), (80, 120))
    assert region.pixel_size_mm == pytest.approx((0.2, 0.2))  # the B-mode's, not the bar's 5 mm
    assert pixel_size_mm(ds) == (pytest.approx([0.2, 0.2]), "SequenceOfUltrasoundRegions")
    # the order of the sequence does not matter
    ds.SequenceOfUltrasoundRegions = list(reversed(ds.SequenceOfUltrasoundRegions))
    assert ultrasound_region_from_dicom(ds) == ([10, 20], [80, 120])


def test_2d_region_wins_over_larger_traces_and_nested_colour_flow() -> None:
    # a Doppler spectrum and an ECG trace larger than the B-mode: not 2D, so the B-mode is kept
    bmode = _region((0, 0, 39, 59), delta=0.03)
    colour_box = _region((10, 10, 29, 39), delta=0.03)  # colour flow: a 2D region inside the B-mode
    spectrum = _region((40, 0, 99, 159), spatial_format=SPECTRAL, delta=0.1)
    ecg = _region((0, 60, 39, 159), spatial_format=WAVEFORM, units=SECONDS)
    ds = _dataset([spectrum, ecg, colour_box, bmode])
    region = ultrasound_region(ds)
    assert (region.start, region.end, region.spatial_format) == ((0, 0), (40, 60), TISSUE_2D)
    assert region.pixel_size_mm == pytest.approx((0.3, 0.3))
    # without any 2D region, the largest region of any kind
    ds = _dataset([ecg, spectrum])
    assert ultrasound_region_from_dicom(ds) == ([40, 0], [100, 160])


def test_dual_display_keeps_the_first_of_equal_panes() -> None:
    ds = _dataset([_region((0, 0, 99, 79)), _region((0, 80, 99, 159))])
    assert ultrasound_region_from_dicom(ds) == ([0, 0], [100, 80])


def test_regions_are_clipped_and_regions_outside_the_image_ignored() -> None:
    # declared larger than the pixel data: clipped (inclusive end + 1, then to Rows x Columns)
    assert ultrasound_region_from_dicom(_dataset([_region((5, 6, 500, 700))])) == ([5, 6], [100, 160])
    # a larger region wholly outside the image is passed over; the one inside is the image region
    ds = _dataset([_region((200, 0, 999, 999)), _region((1, 2, 50, 60))])
    assert ultrasound_region_from_dicom(ds) == ([1, 2], [51, 61])
    assert ultrasound_region_from_dicom(_dataset([_region((200, 0, 999, 999))])) is None
    assert ultrasound_region_from_dicom(_dataset([])) is None


def test_pixel_size_needs_cm_and_pixel_spacing_comes_first() -> None:
    ds = _dataset([_region((0, 0, 49, 49), units=SECONDS)])
    assert ultrasound_region(ds).pixel_size_mm is None
    assert pixel_size_mm(ds) == (None, None)
    ds = _dataset([_region((0, 0, 49, 49), delta=0.05)])
    ds.PixelSpacing = [0.4, 0.6]
    assert pixel_size_mm(ds) == ([0.4, 0.6], "PixelSpacing")


def test_the_crop_is_the_same_from_the_reader_meta_and_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "two_regions.dcm"
    pixels = _write_us(path, [_region((10, 20, 79, 119), delta=0.02), _region((10, 140, 79, 149), delta=0.5)])
    # the package's reader: the region in the meta data, then the preset's crop
    loaded = LoadImaged("image", reader=SegDINOImageReader())({"image": str(path)})
    assert loaded["image"].meta["ultrasound_region"] == ([10, 20], [80, 120])
    cropped = UltrasoundRegionCropd("image")(loaded)["image"]
    expected = np.repeat(pixels[None, 10:80, 20:120].astype(np.float32), 3, axis=0)
    np.testing.assert_array_equal(cropped.numpy(), expected)
    # an image from another reader names only the file: the crop reads the regions from it, by the same rule
    other = MetaTensor(torch.from_numpy(np.repeat(pixels[None].astype(np.float32), 3, 0)))
    other.meta["filename_or_obj"] = str(path)
    np.testing.assert_array_equal(UltrasoundRegionCrop()(other).numpy(), expected)
