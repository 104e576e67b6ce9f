"""The one encoding of each output file: overlay colours by class, PNG masks, NIfTI with the source's pixel size."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, Resized
from PIL import Image

from segdino_monai.io.dicom_reader import read_dicom
from segdino_monai.io.images import LoadRGBImaged
from segdino_monai.io.overlay import PALETTE, overlay
from segdino_monai.io.writers import mask_png, write_nifti
from segdino_monai.transforms import SaveSegmentationd


def test_overlay_gives_each_class_its_palette_colour_and_leaves_the_background():
    image = np.full((4, 6, 3), 100, np.uint8)
    mask = np.zeros((4, 6), np.uint8)
    mask[1, 1] = 2  # class 2 alone: still class 2's colour (red), not the first colour of the palette
    mask[2, 4] = 7  # class 7: the palette cycles back to class 1's colour
    out = overlay(image, mask, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out[1, 1].tolist() == [178, 50, 50]  # round(0.5 * 100 + 0.5 * (255, 0, 0))
    assert out[2, 4].tolist() == [50, 178, 50]  # green
    background = mask == 0
    assert (out[background] == 100).all()
    assert PALETTE[1] == (255, 0, 0)
    floats = overlay(image.astype(np.float32) + 0.2, mask, alpha=0.5)  # float sources: rounded, same blend
    assert np.array_equal(floats, out)
    with pytest.raises(ValueError, match="differs from its mask"):
        overlay(image, mask[:3])


def test_png_mask_is_0_255_when_binary_and_indices_otherwise():
    binary = np.array([[0, 1], [1, 0]], np.uint8)
    assert np.asarray(mask_png(binary)).tolist() == [[0, 255], [255, 0]]
    classes = np.array([[0, 2], [1, 3]], np.uint8)
    assert np.asarray(mask_png(classes)).tolist() == [[0, 2], [1, 3]]


def _saved_nifti(source: str, image: MetaTensor, out: Path) -> nib.Nifti1Image:
    """Resize the image as the presets do, invert a prediction made on it, write it: the bundle's path."""
    preprocessing = Compose([Resized("image", (32, 32))])
    data = preprocessing({"image": image})
    mask = torch.zeros(1, 32, 32)
    mask[0, 4:20, 8:12] = 1
    data["pred"] = MetaTensor(mask, affine=data["image"].affine, meta=dict(data["image"].meta))
    data = Invertd("pred", transform=preprocessing, orig_keys="image", nearest_interp=True)(data)
    assert tuple(data["pred"].shape[1:]) == tuple(image.shape[1:])  # back at the source's size
    SaveSegmentationd("pred", out, overlay=False, nifti=True)({**data, "pred": data["pred"].round()})
    return nib.load(out / f"{Path(source).stem}_mask.nii.gz")


def test_nifti_affine_holds_the_dicom_pixel_spacing(fixtures_dir, tmp_path):
    ds = pydicom.dcmread(fixtures_dir / "dicom/seg/ImagingDataCommons__highdicom/ct_image.dcm")
    ds.PixelSpacing = [0.5, 0.8]  # row spacing, column spacing: unequal, so a swapped axis shows
    ds.save_as(tmp_path / "ct.dcm")
    image = read_dicom(tmp_path / "ct.dcm")
    saved = _saved_nifti(str(tmp_path / "ct.dcm"), image, tmp_path / "bundle")
    assert np.allclose(np.diag(saved.affine), [0.8, 0.5, 1.0, 1.0])  # x = column, y = row
    assert saved.shape == (int(ds.Columns), int(ds.Rows))
    # segdino dicom writes the same file for the same mask and spacing
    mask = np.asarray(saved.dataobj).T
    direct = nib.load(write_nifti(mask, tmp_path / "dicom" / "mask.nii.gz", image.meta["pixel_size_mm"]))
    assert np.array_equal(direct.affine, saved.affine) and np.array_equal(np.asarray(direct.dataobj), mask.T)


def test_nifti_affine_of_a_png_is_one_pixel(tmp_path):
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "photo.png")
    image = LoadRGBImaged("image")({"image": str(tmp_path / "photo.png")})["image"]
    saved = _saved_nifti(str(tmp_path / "photo.png"), image, tmp_path / "bundle")
    assert np.array_equal(saved.affine, np.eye(4)) and saved.shape == (60, 40)
