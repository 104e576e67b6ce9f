from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd, LoadImaged
from PIL import Image
from pydicom.pixels import apply_color_lut
from skimage.morphology import black_tophat, disk

from segdino_monai.transforms import (
    DermoscopyVignetteCrop,
    EndoscopyBorderCrop,
    EndoscopyBorderCropd,
    HairRemoval,
    SpecularHighlightRemoval,
    UltrasoundRegionCrop,
    specular_highlight_mask,
    ultrasound_region_from_dicom,
)
from segdino_monai.transforms.utils import luminance

US = "dicom/us/pydicom__pydicom-data"


def _dicom_image(path: Path) -> MetaTensor:
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    pixels = pixels.astype(np.float32)
    if pixels.max() > 255:
        pixels = pixels / pixels.max() * 255
    return MetaTensor(np.moveaxis(pixels, -1, 0), meta={"filename_or_obj": str(path)})


def _rgb(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    if size is not None:
        image = image.resize(size)
    return np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0)


@pytest.mark.parametrize("name", ["OBXXXX1A.dcm", "OBXXXX1A_rle.dcm", "gdcm-US-ALOKA-16.dcm"])
def test_ultrasound_crop_uses_dicom_regions(fixtures_dir: Path, name: str) -> None:
    path = fixtures_dir / US / name
    start, end = ultrasound_region_from_dicom(path)
    assert ultrasound_region_from_dicom(pydicom.dcmread(path, stop_before_pixels=True)) == (start, end)
    image = _dicom_image(path)
    cropped = UltrasoundRegionCrop()(image)
    assert tuple(cropped.shape[1:]) == (end[0] - start[0], end[1] - start[1])
    assert start[0] >= 24  # the header text rows are gone
    torch.testing.assert_close(cropped, image[:, start[0] : end[0], start[1] : end[1]])


def test_ultrasound_region_from_dicom_without_regions(fixtures_dir: Path) -> None:
    assert ultrasound_region_from_dicom(fixtures_dir / US / "US1_UNCR.dcm") is None
    with pytest.raises(ValueError, match="not_dicom"):
        ultrasound_region_from_dicom(fixtures_dir / "SOURCES.md".replace("SOURCES", "not_dicom"))


def test_ultrasound_detection_removes_text_margins(fixtures_dir: Path) -> None:
    image = _dicom_image(fixtures_dir / US / "US1_UNCR.dcm")  # no regions in the file: detection
    cropped = UltrasoundRegionCrop()(image)
    lum = luminance(image.numpy())
    text_rows = np.nonzero((lum[:100] > 0.85).any(axis=1))[0]  # white burnt-in text at the top
    assert len(text_rows) > 10
    height = cropped.shape[1]
    assert 200 < height < 300 and cropped.shape[2] > 550
    # no bright text in the top and bottom rows of the crop
    crop_lum = luminance(cropped.numpy())
    assert (crop_lum[:3] > 0.85).mean() < 0.01 and (crop_lum[-3:] > 0.85).mean() < 0.01


def test_endoscopy_border_crop_removes_black_frame_and_inverts(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "endoscopy/cvc_endoscene_512"
    for path in sorted((folder / "images").iterdir())[:6]:
        image = _rgb(path)
        cropped = EndoscopyBorderCrop()(image).numpy()
        lum_before, lum_after = luminance(image), luminance(cropped)
        assert (lum_after < 0.08).mean() < 0.5 * (lum_before < 0.08).mean(), path
        for edge in (lum_after[1], lum_after[-2], lum_after[:, 1], lum_after[:, -2]):
            assert (edge < 0.08).mean() <= 0.6, path  # the box is found on a half-size copy
    loader = LoadImaged(["image", "label"], reader="PILReader", reverse_indexing=False, ensure_channel_first=True)
    crop = Compose([loader, EndoscopyBorderCropd(["image", "label"])])
    data = crop({"image": str(folder / "images/129.jpg"), "label": str(folder / "masks/129.jpg")})
    assert data["image"].shape[1:] == data["label"].shape[1:] and data["image"].shape[1] < 512
    restored = Invertd("label", transform=crop, orig_keys="image")(data)["label"]
    assert restored.shape[1:] == (512, 512)


def test_specular_detection_finds_bright_spots() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([np.full((64, 64), v) for v in (0.75, 0.4, 0.35)]).astype(np.float32)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    spots = np.zeros((64, 64), bool)
    spots[10:14, 10:14] = spots[40:43, 50:54] = True
    image[:, spots] = 0.98
    found = specular_highlight_mask(image)
    np.testing.assert_array_equal(found, spots)
    removed = SpecularHighlightRemoval()(image)
    assert specular_highlight_mask(removed).sum() == 0
    assert np.abs(removed[:, spots].mean(axis=1) - [0.75, 0.4, 0.35]).max() < 0.06
    np.testing.assert_array_equal(removed[:, 30, 30], image[:, 30, 30])  # far from spots: untouched


def test_hair_removal_lowers_dark_thin_structures(fixtures_dir: Path) -> None:
    image = _rgb(fixtures_dir / "dermoscopy/ham10000/images/ISIC_0024384.jpg")  # a hairy one
    before = black_tophat(luminance(image), disk(5)) > 0.06
    out = HairRemoval()(image)
    after = black_tophat(luminance(out), disk(5)) > 0.06
    assert before.mean() > 0.05
    assert after.mean() < 0.3 * before.mean()
    assert out.shape == image.shape and out.dtype == np.float32


def test_vignette_crop_removes_dark_corners(fixtures_dir: Path) -> None:
    skin = _rgb(fixtures_dir / "dermoscopy/ham10000/images/ISIC_0024419.jpg", (300, 225))
    rows, cols = np.mgrid[:225, :300]
    outside = (rows - 112) ** 2 + (cols - 150) ** 2 > 150**2  # a round lens wider than the photo is tall
    image = skin.copy()
    image[:, outside] = 10.0
    lum = luminance(image)
    cropped = luminance(DermoscopyVignetteCrop()(image).numpy())
    assert (lum < 0.15).mean() > 0.1
    assert (cropped < 0.15).mean() < 0.03
    assert cropped.size > 0.6 * lum.size  # it did not crop away the skin
    untouched = luminance(DermoscopyVignetteCrop()(skin).numpy())
    assert untouched.shape == lum.shape  # no vignette, no crop


def test_crop_wrappers_pass_every_detector_setting_on(fixtures_dir: Path) -> None:
    """The crops take their detector's arguments (work_size included), whose defaults live in the detector only."""
    from segdino_monai.transforms import DermoscopyVignetteCropd
    from segdino_monai.transforms.endoscopy import EndoscopyContentBox

    image = _rgb(fixtures_dir / "endoscopy/cvc_endoscene_512/images/129.jpg")
    for crop in (
        EndoscopyBorderCrop(work_size=64, max_shrink=0.1),
        EndoscopyBorderCropd("image", work_size=64, max_shrink=0.1),
    ):
        assert (crop.box_fn.work_size, crop.box_fn.max_shrink, crop.box_fn.dark_threshold) == (64, 0.1, 0.08)
    start, end = EndoscopyContentBox(work_size=64, max_shrink=0.1)(image)
    cropped = EndoscopyBorderCropd("image", work_size=64, max_shrink=0.1)({"image": image})["image"]
    assert tuple(cropped.shape[1:]) == (end[0] - start[0], end[1] - start[1])
    assert (
        EndoscopyBorderCrop().box_fn.work_size == 256 and DermoscopyVignetteCropd("image").box_fn.dark_threshold == 0.15
    )
    with pytest.raises(TypeError, match="work_sise"):
        DermoscopyVignetteCrop(work_sise=64)
