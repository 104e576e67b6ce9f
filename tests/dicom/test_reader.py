from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from monai.transforms import LoadImaged
from pydicom.pixels import apply_color_lut, apply_voi_lut, convert_color_space

from segdino_monai.dicom import DicomReader, DicomReadError, read_dicom, read_itk
from segdino_monai.transforms import UltrasoundRegionCropd

IMAGES = ["us", "vl"]


def _files(dicom_dir: Path) -> list[Path]:
    return sorted(p for sub in IMAGES for p in (dicom_dir / sub).rglob("*.dcm"))


def reference_rgb(path: Path) -> np.ndarray:
    """(F, H, W, 3) RGB on 0..255 from pydicom's own pixel handling, decoded without colour conversion."""
    ds = pydicom.dcmread(path)
    raw = (
        ds.pixel_array
        if ds.PhotometricInterpretation.startswith("YBR_ICT") or "RCT" in ds.PhotometricInterpretation
        else None
    )
    if raw is None:
        ds.pixel_array_options(as_rgb=False)
        raw = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    arr = raw if frames > 1 else raw[None]
    pi = ds.PhotometricInterpretation
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return (rgb // 256 if rgb.dtype.itemsize > 1 else rgb).astype(np.float64)
    if ds.SamplesPerPixel == 1:
        grey = apply_voi_lut(arr, ds).astype(np.float64)
        if "WindowCenter" in ds:
            grey = grey / (2**ds.BitsStored - 1) * 255
        return np.repeat(grey[..., None], 3, -1)
    if pi in ("YBR_FULL", "YBR_FULL_422"):
        return convert_color_space(arr, pi, "RGB", per_frame=True).astype(np.float64)
    return arr.astype(np.float64)


def test_every_fixture_image_reads_with_the_right_shape_colour_and_meta(dicom_dir):
    files = _files(dicom_dir)
    assert len(files) == 15
    for path in files:
        ds = pydicom.dcmread(path)
        image = read_dicom(path)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected_shape = (3, ds.Rows, ds.Columns) if frames == 1 else (3, frames, ds.Rows, ds.Columns)
        assert tuple(image.shape) == expected_shape, path.name
        reference = reference_rgb(path)
        ours = np.moveaxis(image.numpy(), 0, -1).reshape(reference.shape)
        difference = np.abs(ours - reference)
        if ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit:
            # lossy JPEG: decoder plugins upsample chroma and round YCbCr->RGB slightly differently
            assert difference.max() <= 4.0 and difference.mean() < 0.5, path.name
        else:
            assert difference.max() == 0.0 if ds.SamplesPerPixel == 3 else difference.max() < 1e-3, path.name
        meta = image.meta
        assert meta["SOPInstanceUID"] == ds.SOPInstanceUID and meta["SeriesInstanceUID"] == ds.SeriesInstanceUID
        assert meta["StudyInstanceUID"] == ds.StudyInstanceUID and meta["SOPClassUID"] == ds.SOPClassUID
        assert meta["Modality"] == ds.Modality
        assert meta["number_of_frames"] == frames and meta["frame_numbers"] == list(range(1, frames + 1))
        assert meta["original_size"] == [ds.Rows, ds.Columns]
        assert meta["decoder"].startswith("pydicom:")
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            assert meta["decoder"] != "pydicom:native"


def test_colour_conversions_are_real(dicom_dir):
    # YBR_FULL_422 JPEG cine: RGB output differs from the raw YCbCr planes
    cine = dicom_dir / "us/pydicom__pydicom/examples_ybr_color.dcm"
    ds = pydicom.dcmread(cine)
    ds.pixel_array_options(as_rgb=False)
    raw = ds.pixel_array[0].astype(np.float64)
    ours = np.moveaxis(read_dicom(cine, frames=1).numpy(), 0, -1)
    assert np.abs(ours - raw).mean() > 5
    # palette: three different channels from one index channel
    palette = read_dicom(dicom_dir / "us/pydicom__pydicom/examples_palette.dcm").numpy()
    assert not np.array_equal(palette[0], palette[2])
    # 8-bit MONOCHROME2 with a window: grey, three equal channels
    grey = read_dicom(dicom_dir / "us/pydicom__pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm").numpy()
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2])
    # big endian RGB reads like pydicom's
    big = dicom_dir / "us/pydicom__pydicom/ExplVR_BigEnd.dcm"
    assert np.array_equal(np.moveaxis(read_dicom(big).numpy(), 0, -1), pydicom.dcmread(big).pixel_array)


def test_ultrasound_physical_size_and_region(dicom_dir):
    cine = read_dicom(dicom_dir / "us/pydicom__pydicom/examples_ybr_color.dcm", frames=[2, 5])
    assert tuple(cine.shape) == (3, 2, 240, 320) and cine.meta["frame_numbers"] == [2, 5]
    assert cine.meta["pixel_size_mm"] == pytest.approx([0.5104970559477806, 0.5104970559477806])
    assert cine.meta["pixel_size_source"] == "SequenceOfUltrasoundRegions"
    assert cine.meta["ultrasound_region"] == ([31, 84], [240, 320])  # clipped to the image
    aloka = read_dicom(dicom_dir / "us/pydicom__pydicom-data/gdcm-US-ALOKA-16.dcm")
    assert aloka.meta["pixel_size_mm"] == pytest.approx([0.3826530650258064] * 2)
    assert "pixel_size_mm" not in read_dicom(dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm").meta
    # the region crop of the ultrasound preset uses the meta, and the affine carries the spacing
    one = read_dicom(dicom_dir / "us/pydicom__pydicom/examples_palette.dcm")
    cropped = UltrasoundRegionCropd("image")({"image": one})["image"]
    assert tuple(cropped.shape) == (3, 350 - 60, 800 - 120)
    assert float(one.affine[0, 0]) == pytest.approx(0.26228787661969977)


def test_single_frame_selection_and_loadd(dicom_dir):
    path = dicom_dir / "us/pydicom__pydicom/examples_ybr_color.dcm"
    out = LoadImaged("image", reader=DicomReader(frame=3))({"image": str(path)})["image"]
    assert tuple(out.shape) == (3, 240, 320) and out.meta["frame_numbers"] == [3]
    with pytest.raises(DicomReadError, match="outside 1..30"):
        read_dicom(path, frames=[31])


def test_file_without_file_meta_reads_with_force(dicom_dir, tmp_path):
    source = dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm"
    ds = pydicom.dcmread(source)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()  # the dataset body alone: no preamble, no DICM, no file meta (old ACR-NEMA style)
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    bare = tmp_path / "bare.dcm"
    bare.write_bytes(buffer.getvalue())
    image = read_dicom(bare)
    assert np.array_equal(np.moveaxis(image.numpy(), 0, -1), ds.pixel_array)
    assert image.meta["SOPInstanceUID"] == ds.SOPInstanceUID


def test_bad_inputs_name_file_and_reason(dicom_dir, tmp_path):
    text = tmp_path / "notes.dcm"
    text.write_text("this is not DICOM\n" * 20)
    with pytest.raises(DicomReadError, match="notes.dcm: not a DICOM file"):
        read_dicom(text)
    seg = dicom_dir / "seg/ImagingDataCommons__highdicom/seg_image_ct_binary.dcm"
    with pytest.raises(DicomReadError, match="segmentation"):
        read_dicom(seg)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes((dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm").read_bytes()[:200000])
    with pytest.raises(DicomReadError, match="truncated.dcm"):
        read_dicom(truncated)


def test_itk_path_for_nifti_and_mha(tmp_path):
    import itk
    import nibabel as nib

    grey = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    nib.save(nib.Nifti1Image(grey.T.copy(), np.diag([0.5, 0.25, 1.0, 1.0])), tmp_path / "a.nii.gz")
    image = read_itk(tmp_path / "a.nii.gz")
    assert tuple(image.shape) == (3, 20, 30) and image.meta["decoder"] == "itk"
    assert np.array_equal(image.numpy()[0], grey.astype(np.float32))
    assert image.meta["pixel_size_mm"] == pytest.approx([0.25, 0.5])
    mha = itk.image_from_array(grey)
    mha.SetSpacing([0.3, 0.7])
    itk.imwrite(mha, str(tmp_path / "b.mha"))
    image = read_itk(tmp_path / "b.mha")
    assert np.array_equal(image.numpy()[1], grey.astype(np.float32))
    assert image.meta["pixel_size_mm"] == pytest.approx([0.7, 0.3])


def test_itk_fallback_when_no_pydicom_plugin(dicom_dir, monkeypatch):
    from segdino_monai.dicom import reader

    def no_plugin(*args, **kwargs):
        raise RuntimeError("no pydicom decoder (simulated)")

    monkeypatch.setattr(reader, "_decode_pydicom", no_plugin)
    path = dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm"
    image = read_dicom(path)
    assert image.meta["decoder"] == "itk:gdcm"
    assert np.array_equal(np.moveaxis(image.numpy(), 0, -1), pydicom.dcmread(path).pixel_array)


def test_package_imports_without_loading_highdicom():
    import subprocess
    import sys

    code = "import sys, segdino_monai.dicom, segdino_monai.dicom.pipeline; print('highdicom' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
