from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import LoadImaged
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_voi_lut, convert_color_space

from segdino_monai.io.dicom_reader import DicomReader, DicomReadError, read_dicom, read_itk
from segdino_monai.io.images import LoadRGBImaged, SegDINOImageReader
from segdino_monai.transforms import UltrasoundRegionCropd
from segdino_monai.utils.errors import InputError

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
    from segdino_monai.io import dicom_reader as reader

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

    code = "import sys, segdino_monai.dicom, segdino_monai.services.dicom_batch; print('highdicom' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


# pixel size in mm of the fixture files that have one (all from their ultrasound regions); the others have none
FIXTURE_PIXEL_SIZE = {
    "examples_palette.dcm": 0.26228787661969977,
    "examples_ybr_color.dcm": 0.5104970559477806,
    "JPGLosslessP14SV1_1s_1f_8b.dcm": 0.25476696592378156,
    "OBXXXX1A.dcm": 0.26228787661969977,
    "OBXXXX1A_rle.dcm": 0.26228787661969977,
    "gdcm-US-ALOKA-16.dcm": 0.3826530650258064,
}


def _readers(frame: int | None) -> list:
    return [DicomReader(frame=frame), SegDINOImageReader(frame=frame)]


def test_load_imaged_reads_every_fixture_dicom_like_pydicom(dicom_dir):
    for path in _files(dicom_dir):
        ds = pydicom.dcmread(path)
        count = int(ds.get("NumberOfFrames", 1) or 1)
        reference = reference_rgb(path)[0]  # frame 1, independently of our decoder
        decoded = read_dicom(path, frames=1)
        loaders = [LoadImaged(keys="image", reader=r) for r in _readers(1 if count > 1 else None)]
        loaders.append(LoadRGBImaged("image", reader=SegDINOImageReader(frame=1)))
        for load in loaders:
            image = load({"image": str(path)})["image"]
            assert tuple(image.shape) == (3, ds.Rows, ds.Columns) and image.dtype == torch.float32, path.name
            np.testing.assert_array_equal(image.numpy(), decoded.numpy(), err_msg=path.name)
            difference = np.abs(np.moveaxis(image.numpy(), 0, -1) - reference)
            if ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit:
                assert difference.max() <= 4.0 and difference.mean() < 0.5, path.name
            else:
                assert difference.max() < 1e-3, path.name
            size = FIXTURE_PIXEL_SIZE.get(path.name)
            assert image.meta.get("pixel_size_mm") == (None if size is None else pytest.approx([size, size]))
            assert float(image.affine[0, 0]) == pytest.approx(size or 1.0), path.name
            assert float(image.affine[1, 1]) == pytest.approx(size or 1.0), path.name
            meta = image.meta
            assert meta["SOPInstanceUID"] == ds.SOPInstanceUID and meta["StudyInstanceUID"] == ds.StudyInstanceUID
            assert meta["SeriesInstanceUID"] == ds.SeriesInstanceUID and meta["SOPClassUID"] == ds.SOPClassUID
            assert meta["frame_numbers"] == [1] and meta["number_of_frames"] == count
            assert meta["filename_or_obj"] == str(path)
            assert tuple(meta["spatial_shape"]) == (ds.Rows, ds.Columns)


def test_load_imaged_reads_a_2d_itk_file(tmp_path):
    import nibabel as nib

    grey = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    nib.save(nib.Nifti1Image(grey.T.copy(), np.diag([0.5, 0.25, 1.0, 1.0])), tmp_path / "a.nii.gz")
    for reader in _readers(None):
        assert reader.verify_suffix(str(tmp_path / "a.nii.gz"))
        image = LoadImaged(keys="image", reader=reader)({"image": str(tmp_path / "a.nii.gz")})["image"]
        np.testing.assert_array_equal(image.numpy(), np.repeat(grey[None].astype(np.float32), 3, axis=0))
        assert image.meta["pixel_size_mm"] == pytest.approx([0.25, 0.5]) and image.meta["decoder"] == "itk"
        assert float(image.affine[0, 0]) == pytest.approx(0.25) and float(image.affine[1, 1]) == pytest.approx(0.5)
    with pytest.raises(InputError, match=r"a\.nii\.gz: frame 2 asked for, but frames apply to DICOM files only"):
        LoadImaged(keys="image", reader=DicomReader(frame=2))({"image": str(tmp_path / "a.nii.gz")})


def test_dicom_without_extension_is_read_by_its_dicm_marker(dicom_dir, tmp_path):
    source = dicom_dir / "us/pydicom__pydicom/examples_rgb_color.dcm"
    expected = read_dicom(source).numpy()
    # PACS exports: no extension, or the SOP Instance UID as the name (whose last part looks like an extension)
    for name in ("IM000001", "1.2.840.113619.2.55.3.604688119.969"):
        path = tmp_path / name
        path.write_bytes(source.read_bytes())
        for reader in _readers(None):
            assert reader.verify_suffix(str(path)), name
            image = LoadImaged(keys="image", reader=reader)({"image": str(path)})["image"]
            np.testing.assert_array_equal(image.numpy(), expected)
            assert image.meta["SOPInstanceUID"] == pydicom.dcmread(source).SOPInstanceUID
    # a picture without extension is not taken for DICOM: the package's reader reads it as a picture
    picture = (np.arange(12 * 16 * 3) % 256).astype(np.uint8).reshape(12, 16, 3)
    Image.fromarray(picture).save(tmp_path / "photo", format="PNG")
    assert not DicomReader().verify_suffix(str(tmp_path / "photo"))
    image = LoadImaged(keys="image", reader=SegDINOImageReader())({"image": str(tmp_path / "photo")})["image"]
    np.testing.assert_array_equal(image.numpy(), np.moveaxis(picture, -1, 0).astype(np.float32))


def test_multi_frame_file_reads_the_chosen_frame(dicom_dir, monkeypatch):
    from segdino_monai.io import dicom_reader as reader_module

    path = dicom_dir / "us/pydicom__pydicom/examples_ybr_color.dcm"
    reference = reference_rgb(path)
    parsed = []
    real_dcmread = reader_module.dcmread
    monkeypatch.setattr(reader_module, "dcmread", lambda *a, **k: parsed.append(a[0]) or real_dcmread(*a, **k))
    reader = SegDINOImageReader(frame=3)
    load = LoadImaged(keys="image", reader=reader)
    for frame in (3, 17, 30):
        reader.frame = frame  # as segdino dicom sets it, frame by frame
        image = load({"image": str(path)})["image"]
        assert tuple(image.shape) == (3, 240, 320) and image.meta["frame_numbers"] == [frame]
        assert image.meta["number_of_frames"] == 30
        difference = np.abs(np.moveaxis(image.numpy(), 0, -1) - reference[frame - 1])
        assert difference.max() <= 4.0 and difference.mean() < 0.5, frame  # lossy JPEG, as above
        assert image.meta["ultrasound_region"] == ([31, 84], [240, 320])
    assert len(parsed) == 1  # the data set is parsed once for all its frames
    # no frame chosen: refused with the file, its frame count and what to run instead
    for reader in _readers(None):
        with pytest.raises(InputError) as info:
            LoadImaged(keys="image", reader=reader)({"image": str(path)})
        message = str(info.value)
        assert str(path) in message and "30 frames" in message and "segdino dicom" in message, message
    with pytest.raises(InputError, match=r"examples_ybr_color\.dcm: frame numbers \[31\] outside 1\.\.30"):
        LoadImaged(keys="image", reader=DicomReader(frame=31))({"image": str(path)})
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(InputError, match="frame="):
            DicomReader(frame=bad)
    # a single-frame file reads the same with frame 1 or no frame, and refuses frame 2
    single = dicom_dir / "us/pydicom__pydicom/examples_rgb_color.dcm"
    one, none = (LoadImaged(keys="image", reader=DicomReader(frame=f))({"image": str(single)}) for f in (1, None))
    np.testing.assert_array_equal(one["image"].numpy(), none["image"].numpy())
    with pytest.raises(InputError, match=r"outside 1\.\.1: the file has 1 frame"):
        LoadImaged(keys="image", reader=DicomReader(frame=2))({"image": str(single)})


def test_changed_file_is_parsed_again(dicom_dir, tmp_path):
    cine = tmp_path / "cine.dcm"
    cine.write_bytes((dicom_dir / "us/pydicom__pydicom/examples_ybr_color.dcm").read_bytes())
    reader = DicomReader(frame=2)
    first = reader.get_data(reader.read(str(cine)))[0]
    ds = pydicom.dcmread(cine)  # the same file written again with another SOP Instance UID
    ds.SOPInstanceUID = "1.2.3.4"
    ds.save_as(cine)
    array, meta = reader.get_data(reader.read(str(cine)))
    assert meta["SOPInstanceUID"] == "1.2.3.4"
    np.testing.assert_array_equal(array, first)


def test_bad_files_raise_input_error_naming_them_out_of_load_imaged(dicom_dir, tmp_path):
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes((dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm").read_bytes()[:200000])
    text = tmp_path / "notes.dcm"
    text.write_text("this is not DICOM\n" * 20)
    header_only = tmp_path / "IM0002"  # a DICM marker and nothing after it
    header_only.write_bytes(b"\0" * 128 + b"DICM")
    seg = dicom_dir / "seg/ImagingDataCommons__highdicom/seg_image_ct_binary.dcm"
    missing = tmp_path / "missing.dcm"
    for path in (truncated, text, header_only, seg, missing):
        for reader in _readers(1):
            # read() only names the file: MONAI does not try its other readers, our message comes out as it is
            with pytest.raises(InputError) as info:
                LoadImaged(keys="image", reader=reader)({"image": str(path)})
            message = str(info.value)
            assert isinstance(info.value, DicomReadError) and message.startswith(f"{path}: ") and "\n" not in message
    # inside a whole preset pipeline too
    from segdino_monai.utils.errors import input_error_message
    from segdino_monai.workflows.configs import get_transforms

    pipeline = get_transforms("ultrasound", spatial_size=(64, 64), with_label=False)[1]
    with pytest.raises(Exception) as info:
        pipeline({"image": str(truncated)})
    assert f"{truncated}: pixel data is" in input_error_message(info.value)


def test_reverse_indexing_swaps_pixels_and_meta(dicom_dir):
    path = dicom_dir / "us/pydicom__pydicom/examples_palette.dcm"
    rows_first = LoadImaged(keys="image", reader=DicomReader())({"image": str(path)})["image"]
    swapped = LoadImaged(keys="image", reader=DicomReader(reverse_indexing=True))({"image": str(path)})["image"]
    np.testing.assert_array_equal(swapped.numpy(), rows_first.numpy().transpose(0, 2, 1))
    assert swapped.meta["ultrasound_region"] == ([120, 60], [800, 350])
    assert swapped.meta["original_size"] == [800, 350] and tuple(swapped.meta["spatial_shape"]) == (800, 350)
    assert UltrasoundRegionCropd("image")({"image": swapped})["image"].shape == (3, 800 - 120, 350 - 60)


def test_bundle_inference_reads_dicom_files_as_they_are(dicom_dir, tmp_path, decoder_checkpoint, segmenter_factory):
    """inference.json segments DICOM files like segdino dicom; a cine and a damaged file are reported and skipped."""
    import json
    import shutil

    from segdino_monai.utils.naming import with_output_names
    from segdino_monai.workflows import ImagesSkipped
    from tests.bundle.conftest import CONFIGS, INFERENCE, tiny_overrides, workflow

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shutil.copy(dicom_dir / "us/pydicom__pydicom-data/OBXXXX1A.dcm", inputs / "OBXXXX1A.dcm")
    shutil.copy(dicom_dir / "us/pydicom__pydicom-data/US1_UNCR.dcm", inputs / "IM0001")  # no extension
    shutil.copy(dicom_dir / "us/pydicom__pydicom/examples_ybr_color.dcm", inputs / "cine.dcm")
    (inputs / "broken.dcm").write_bytes((inputs / "IM0001").read_bytes()[:3000])
    (tmp_path / "models").mkdir()
    shutil.copy(decoder_checkpoint, tmp_path / "models" / "model.pt")
    datalist = with_output_names([{"image": str(p)} for p in sorted(inputs.iterdir())])
    overrides = tiny_overrides(tmp_path, dataset_dir=str(inputs), datalist=datalist)
    flow = workflow([INFERENCE, str(CONFIGS / "ultrasound.json")], "infer", **overrides)
    with pytest.raises(ImagesSkipped):
        flow.run()
    out = tmp_path / "eval"
    skipped = {
        Path(item["file"]).name: item["reason"] for item in json.loads((out / "summary.json").read_text())["skipped"]
    }
    assert set(skipped) == {"cine.dcm", "broken.dcm"}
    assert "30 frames" in skipped["cine.dcm"] and "segdino dicom" in skipped["cine.dcm"]
    assert "truncated or damaged" in skipped["broken.dcm"]
    segmenter = segmenter_factory("ultrasound")
    for name, source in (("OBXXXX1A", "OBXXXX1A.dcm"), ("IM0001", "IM0001")):
        mask = np.asarray(Image.open(out / f"{name}_mask.png")) > 0
        expected = segmenter(inputs / source) > 0
        assert mask.any() and np.array_equal(mask, expected), name
