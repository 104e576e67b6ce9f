from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import LoadImaged
from PIL import Image
from scipy import ndimage

from segdino_monai.data import LoadMask, LoadMaskd


def _disk_mask(height: int = 64, width: int = 80) -> np.ndarray:
    rows, cols = np.mgrid[:height, :width]
    mask = ((rows - 30) ** 2 + (cols - 50) ** 2 < 15**2) | ((rows < 10) & (cols < 20))  # asymmetric on purpose
    return mask


def _save_all_formats(mask: np.ndarray, folder: Path) -> dict[str, Path]:
    paths = {name: folder / f"mask_{name}" for name in ("0255.png", "01.png", "palette.png", "1bit.png", "rgb.png")}
    paths["jpeg"] = folder / "mask.jpg"
    grey = (mask * 255).astype(np.uint8)
    Image.fromarray(grey).save(paths["0255.png"])
    Image.fromarray(mask.astype(np.uint8)).save(paths["01.png"])
    palette = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.save(paths["palette.png"])
    Image.fromarray(mask).convert("1").save(paths["1bit.png"])
    Image.fromarray(np.stack([grey] * 3, axis=-1)).save(paths["rgb.png"])
    Image.fromarray(grey).convert("RGB").save(paths["jpeg"], quality=95)
    return paths


def test_same_mask_in_every_format(tmp_path: Path) -> None:
    mask = _disk_mask()
    paths = _save_all_formats(mask, tmp_path)
    assert Image.open(paths["palette.png"]).mode == "P" and Image.open(paths["1bit.png"]).mode == "1"
    loader = LoadMask()
    for name, path in paths.items():
        out = loader(path)
        assert out.shape == (1, *mask.shape) and out.dtype == torch.uint8, name
        got = out[0].numpy().astype(bool)
        if name == "jpeg":
            assert (got != mask).mean() < 0.005, name  # JPEG: only a few boundary pixels may differ
        else:
            np.testing.assert_array_equal(got, mask, err_msg=name)
        assert out.meta["filename_or_obj"] == str(path)


def test_class_colours_nearest_with_jpeg_noise(tmp_path: Path) -> None:
    rgb = np.zeros((40, 60, 3), dtype=np.uint8)
    rgb[5:20, 5:25] = (0, 255, 0)
    rgb[22:38, 30:55] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "m.png")
    Image.fromarray(rgb).save(tmp_path / "m.jpg", quality=90)
    expected = np.zeros((40, 60), dtype=np.uint8)
    expected[5:20, 5:25], expected[22:38, 30:55] = 1, 2
    exact = LoadMask(class_colors={(0, 255, 0): 1, (255, 0, 0): 2})(tmp_path / "m.png")[0].numpy()
    np.testing.assert_array_equal(exact, expected)
    noisy = LoadMask(class_colors={(0, 255, 0): 1, (255, 0, 0): 2})(tmp_path / "m.jpg")[0].numpy()
    # JPEG (chroma subsampling) blurs colour edges: differences only within 3 pixels of a class boundary
    boundary = ndimage.maximum_filter(expected, 7) != ndimage.minimum_filter(expected, 7)
    assert not (noisy != expected)[~boundary].any() and set(np.unique(noisy)) == {0, 1, 2}


def test_several_masks_merge(tmp_path: Path) -> None:
    first, second = np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.uint8)
    first[2:10, 2:10], second[6:15, 6:15] = 255, 255
    Image.fromarray(first).save(tmp_path / "a.png")
    Image.fromarray(second).save(tmp_path / "b.png")
    union = LoadMask()([tmp_path / "a.png", tmp_path / "b.png"])
    np.testing.assert_array_equal(union[0].numpy(), ((first > 0) | (second > 0)).astype(np.uint8))
    assert union.meta["mask_files"] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
    green, red = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    green[2:10, 2:10], red[6:15, 6:15] = (0, 255, 0), (255, 0, 0)
    Image.fromarray(green).save(tmp_path / "g.png")
    Image.fromarray(red).save(tmp_path / "r.png")
    by_max = LoadMask(class_colors={(0, 255, 0): 1, (255, 0, 0): 2})([tmp_path / "g.png", tmp_path / "r.png"])[0]
    first_wins = LoadMask(class_colors={(0, 255, 0): 1, (255, 0, 0): 2}, merge="first")(
        [tmp_path / "g.png", tmp_path / "r.png"]
    )[0]
    assert by_max[7, 7] == 2 and first_wins[7, 7] == 1 and by_max[3, 3] == 1 and by_max[14, 14] == 2


def test_empty_mask_flagged_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    Image.fromarray(np.full((16, 16), 40, np.uint8)).save(tmp_path / "empty.png")  # below the threshold
    lesion = np.full((16, 16), 40, np.uint8)
    lesion[4:8, 4:8] = 255
    Image.fromarray(lesion).save(tmp_path / "lesion.png")
    with caplog.at_level(logging.DEBUG, logger="segdino_monai.io.masks"):
        out = LoadMask()(tmp_path / "empty.png")
        full = LoadMask()(tmp_path / "lesion.png")
    assert out.meta["empty"] is True and not out.any()
    assert full.meta["empty"] is False and int(full.sum()) == 16
    assert "empty mask (no foreground): " in caplog.text and "empty.png" in caplog.text
    assert "lesion.png" not in caplog.text


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.png"):
        LoadMask()(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        LoadMask()(tmp_path / "broken.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "other.png")
    with pytest.raises(ValueError, match="other.png"):
        LoadMask()([tmp_path / "small.png", tmp_path / "other.png"])


def _raw_foreground(path: Path, threshold: int = 127) -> int:
    """Independent foreground count: PIL's raw array, any channel above the threshold."""
    raw = np.asarray(Image.open(path).convert("RGB"))
    return int((raw.max(axis=-1) > threshold).sum())


FIXTURE_SETS = {
    "endoscopy/kvasir_seg_256": ("images", "masks", lambda name: name, 20),
    "endoscopy/cvc_endoscene_512": ("images", "masks", lambda name: name, 24),
    "dermoscopy/ham10000": ("images", "masks", lambda name: name.replace(".png", ".jpg"), 36),
    "dermoscopy/isic2017_val": ("images", "masks", lambda name: name.replace("_segmentation.png", ".jpg"), 8),
    "ultrasound/busi_rgbmask": ("images", "masks", lambda name: name, 30),
    "ultrasound/ddti": ("images", "masks", lambda name: name, 20),
}


@pytest.mark.parametrize("subset", sorted(FIXTURE_SETS))
def test_fixture_masks_match_raw_pixels(fixtures_dir: Path, subset: str) -> None:
    image_dir, mask_dir, image_name, count = FIXTURE_SETS[subset]
    masks = sorted((fixtures_dir / subset / mask_dir).iterdir())[:count]
    assert masks, f"no masks in {subset}"
    loader = LoadMaskd("label")
    for mask_path in masks:
        out = loader({"label": str(mask_path)})["label"]
        values = set(torch.unique(out).tolist())
        assert out.dtype == torch.uint8 and values <= {0, 1}, mask_path
        assert int(out.sum()) == _raw_foreground(mask_path), mask_path
        image_path = fixtures_dir / subset / image_dir / image_name(mask_path.name)
        image = LoadImaged("image", reader="PILReader", reverse_indexing=False, ensure_channel_first=True)(
            {"image": str(image_path)}
        )["image"]
        assert image.shape[1:] == out.shape[1:], f"{image_path} and {mask_path} disagree in size"


def test_fixture_mask_aligned_with_image(fixtures_dir: Path) -> None:
    """A non-square pair: the mask covers the lesion, which is darker than the skin around it."""
    subset = fixtures_dir / "dermoscopy/ham10000"
    image = LoadImaged("image", reader="PILReader", reverse_indexing=False, ensure_channel_first=True)(
        {"image": str(subset / "images/ISIC_0024340.jpg")}
    )["image"]
    mask = LoadMask()(subset / "masks/ISIC_0024340.png")
    assert image.shape[1:] == mask.shape[1:] == (450, 600)
    lum = image.mean(0)
    inside, outside = lum[mask[0] > 0].mean(), lum[mask[0] == 0].mean()
    assert inside < outside - 20
    # locally too: just inside the border is darker than just outside it (a shifted or flipped mask fails this)
    region = mask[0].numpy() > 0
    inner = region & ~ndimage.binary_erosion(region, iterations=6)
    outer = ndimage.binary_dilation(region, iterations=6) & ~region
    shifted = np.roll(region, 30, axis=1)
    shifted_inner = shifted & ~ndimage.binary_erosion(shifted, iterations=6)
    shifted_outer = ndimage.binary_dilation(shifted, iterations=6) & ~shifted
    lum = lum.numpy()
    assert lum[outer].mean() - lum[inner].mean() > 2 * abs(lum[shifted_outer].mean() - lum[shifted_inner].mean())


def test_busi_colour_masks_give_both_classes(fixtures_dir: Path) -> None:
    loader = LoadMask(class_colors={(0, 255, 0): 1, (255, 0, 0): 2})
    found: set[int] = set()
    for path in sorted((fixtures_dir / "ultrasound/busi_rgbmask/masks").iterdir()):
        out = loader(path)[0].numpy()
        raw = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(out == 1, (raw[..., 1] > 127) & (raw[..., 0] <= 127), err_msg=str(path))
        np.testing.assert_array_equal(out == 2, (raw[..., 0] > 127) & (raw[..., 1] <= 127), err_msg=str(path))
        found |= set(np.unique(out).tolist())
    assert found == {0, 1, 2}
