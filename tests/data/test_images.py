"""Image files as the field's datasets ship them: every format read into the same 8-bit RGB, bombs and bad files.

Every format is built in the test from one real picture (a CVC-EndoSceneStill frame from the shared fixtures,
cropped to 96x128 so that a transposed read cannot go unnoticed) and compared with its 8-bit RGB twin.
"""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from segdino_monai.data import LoadMask, check_image
from segdino_monai.io.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_PIXELS_ENV,
    LoadRGBImaged,
    SegDINOImageReader,
    image_size,
    max_image_pixels,
    read_image,
)
from segdino_monai.utils.errors import InputError, input_error_message
from segdino_monai.workflows.configs import get_transforms


@pytest.fixture(scope="module")
def picture(fixtures_dir: Path) -> np.ndarray:
    """A real endoscopy picture, 96 rows x 128 columns, uint8 RGB."""
    path = sorted((fixtures_dir / "endoscopy" / "cvc_endoscene_512" / "images").glob("*.jpg"))[0]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))[100:196, 50:178].copy()


def _grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def _quantized(rgb: np.ndarray) -> Image.Image:
    """The picture with at most 256 colours (a palette image), so that palette files can hold it exactly."""
    return Image.fromarray(rgb).quantize(256)


def _tiff_colormap(palette_image: Image.Image) -> np.ndarray:
    palette = np.asarray(palette_image.getpalette(), dtype=np.uint16).reshape(-1, 3)
    colormap = np.zeros((3, 256), dtype=np.uint16)
    colormap[:, : len(palette)] = palette.T * 257  # TIFF colour maps are 16-bit
    return colormap


def _write(kind: str, rgb: np.ndarray, folder: Path) -> tuple[Path, np.ndarray]:
    """Write the picture as ``kind``; return the file and the 8-bit RGB it must read as."""
    grey = _grey(rgb)
    grey_rgb = np.repeat(grey[..., None], 3, axis=-1)
    alpha = np.linspace(0, 255, rgb.shape[1], dtype=np.uint8)[None].repeat(rgb.shape[0], 0)
    path = folder / kind
    if kind == "rgb.png":
        Image.fromarray(rgb).save(path)
    elif kind == "rgb.bmp":
        Image.fromarray(rgb).save(path)
    elif kind == "rgba.png":  # alpha is dropped: the colour stored under it is the picture
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    elif kind == "palette.png":
        _quantized(rgb).save(path)
        return path, np.asarray(_quantized(rgb).convert("RGB"))
    elif kind == "grey8.png":
        Image.fromarray(grey).save(path)
        return path, grey_rgb
    elif kind == "grey16.png":  # the 16-bit twin of the 8-bit grey picture
        Image.fromarray(grey.astype(np.uint16) * 257).save(path)
        assert Image.open(path).mode.startswith("I")
        return path, grey_rgb
    elif kind == "grey_alpha.png":
        Image.fromarray(np.dstack([grey, alpha]), "LA").save(path)
        return path, grey_rgb
    elif kind == "minisblack_contig.tif":  # CVC-ClinicDB: three samples per pixel tagged MINISBLACK
        tifffile.imwrite(path, rgb, photometric="minisblack", planarconfig="contig")
    elif kind == "minisblack_planar.tif":
        tifffile.imwrite(path, np.moveaxis(rgb, -1, 0).copy(), photometric="minisblack", planarconfig="separate")
    elif kind == "rgb.tif":
        tifffile.imwrite(path, rgb, photometric="rgb")
    elif kind == "rgb16.tif":
        tifffile.imwrite(path, rgb.astype(np.uint16) * 257, photometric="rgb")
    elif kind == "rgb_lzw.tif":  # LZW needs imagecodecs in tifffile: read through Pillow instead
        Image.fromarray(rgb).save(path, compression="tiff_lzw")
    elif kind == "rgb_deflate.tif":
        Image.fromarray(rgb).save(path, compression="tiff_adobe_deflate")
    elif kind == "grey16.tif":
        tifffile.imwrite(path, grey.astype(np.uint16) * 257, photometric="minisblack")
        return path, grey_rgb
    elif kind == "miniswhite.tif":
        tifffile.imwrite(path, 255 - grey, photometric="miniswhite")
        return path, grey_rgb
    elif kind == "palette.tif":
        quantized = _quantized(rgb)
        tifffile.imwrite(path, np.asarray(quantized), photometric="palette", colormap=_tiff_colormap(quantized))
        return path, np.asarray(quantized.convert("RGB"))
    elif kind == "cmyk.tif":
        tifffile.imwrite(path, np.dstack([255 - rgb, np.zeros_like(grey)]), photometric="separated")
    else:
        raise AssertionError(kind)
    return path, rgb


LOSSLESS = [
    "rgb.png",
    "rgb.bmp",
    "rgba.png",
    "palette.png",
    "grey8.png",
    "grey16.png",
    "grey_alpha.png",
    "minisblack_contig.tif",
    "minisblack_planar.tif",
    "rgb.tif",
    "rgb16.tif",
    "rgb_lzw.tif",
    "rgb_deflate.tif",
    "grey16.tif",
    "miniswhite.tif",
    "palette.tif",
    "cmyk.tif",
]


@pytest.mark.parametrize("kind", LOSSLESS)
def test_lossless_formats_read_as_their_8bit_rgb_twin(kind: str, picture: np.ndarray, tmp_path: Path) -> None:
    path, expected = _write(kind, picture, tmp_path)
    got = read_image(path)
    assert got.dtype == np.uint8 and got.shape == (96, 128, 3)
    np.testing.assert_array_equal(got, expected)
    assert image_size(path) == check_image(path) == (128, 96)


def _jpeg_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_jpeg_variants_within_the_error_of_an_rgb_jpeg(picture: np.ndarray, tmp_path: Path) -> None:
    """CMYK (Pillow writes Adobe's inverted CMYK) and greyscale JPEGs: lossy, so compared with a tolerance.

    The tolerance is the error of the same picture saved as an ordinary RGB JPEG at the same quality, times 1.5:
    a CMYK file read as if inverted, or without conversion, is off by ~100 levels on average, far outside it.
    """
    Image.fromarray(picture).save(tmp_path / "rgb.jpg", quality=95)
    budget = 1.5 * _jpeg_error(read_image(tmp_path / "rgb.jpg"), picture)
    assert 0 < budget < 2
    Image.fromarray(picture).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    assert _jpeg_error(read_image(tmp_path / "cmyk.jpg"), picture) < budget
    grey = _grey(picture)
    Image.fromarray(grey).save(tmp_path / "grey.jpg", quality=95)
    got = read_image(tmp_path / "grey.jpg")
    assert got.shape == (96, 128, 3) and (got[..., 0] == got[..., 2]).all()
    assert _jpeg_error(got[..., 0], grey) < budget


def test_bilevel_tiff_mask_reads_as_0_1_classes_and_as_black_and_white(tmp_path) -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:10, 3:20] = True
    Image.fromarray(mask).save(tmp_path / "mask.tif")  # Pillow writes 1-bit TIFFs
    assert tifffile.TiffFile(tmp_path / "mask.tif").pages[0].bitspersample == 1
    np.testing.assert_array_equal(LoadMask(mode="index")(tmp_path / "mask.tif")[0].numpy(), mask.astype(np.uint8))
    np.testing.assert_array_equal(LoadMask()(tmp_path / "mask.tif")[0].numpy(), mask.astype(np.uint8))
    np.testing.assert_array_equal(read_image(tmp_path / "mask.tif"), np.dstack([mask.astype(np.uint8) * 255] * 3))


def test_multipage_tiff_gives_the_first_page_with_a_warning(picture, tmp_path, caplog) -> None:
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.stack([picture, picture[::-1]]), photometric="rgb")
    with caplog.at_level(logging.WARNING, logger="segdino_monai.io.images"):
        np.testing.assert_array_equal(read_image(path), picture)
    assert "stack.tif has 2 pages" in caplog.text


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header announces ``width`` x ``height`` RGB pixels, with one tiny (truncated) data chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


def test_decompression_bomb_refused_from_its_header(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    bomb = tmp_path / "scan.png"
    bomb.write_bytes(_png_header(14000, 13000))
    for read in (read_image, image_size, check_image, LoadMask()):
        with pytest.raises(InputError) as info:
            read(bomb)
        message = str(info.value)
        assert str(bomb) in message and "14000x13000" in message and MAX_PIXELS_ENV in message, message
        assert f"{DEFAULT_MAX_IMAGE_PIXELS / 1e6:g} megapixels" in message
    photo = tmp_path / "photo.png"  # an 8000x6000 camera photo passes the limit (its header is all we read here)
    photo.write_bytes(_png_header(8000, 6000))
    assert image_size(photo) == (8000, 6000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "200_000_000")  # raised: the scan is no bomb now, only a truncated file
    assert max_image_pixels() == 200_000_000
    assert image_size(bomb) == (14000, 13000)
    with pytest.raises(InputError, match="cannot be read"):
        check_image(bomb)
    for typed in ("lots", "inf", "nan", "-5", "0", "1.5"):
        monkeypatch.setenv(MAX_PIXELS_ENV, typed)
        with pytest.raises(InputError, match=f"{MAX_PIXELS_ENV}='{typed}' is not a positive whole number"):
            read_image(photo)
    monkeypatch.setenv(MAX_PIXELS_ENV, " 1e8 ")  # as people type it
    assert max_image_pixels() == 100_000_000


def test_bomb_tiff_refused_before_decoding(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, np.zeros((100, 101), dtype=np.uint8))
    with pytest.raises(InputError, match=r"big\.tif: image is 101x100 .* limit of 0\.01 megapixels"):
        read_image(path)
    with pytest.raises(InputError, match=r"big\.tif: image is 101x100"):
        check_image(path)


def _bad_files(picture: np.ndarray, folder: Path) -> list[Path]:
    Image.fromarray(picture).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    tifffile.imwrite(folder / "truncated.tif", picture, photometric="minisblack", planarconfig="contig")
    data = (folder / "truncated.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(data[:100])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("these are my notes, not a picture\n")
    return [folder / n for n in ("truncated.png", "truncated.tif", "empty.jpg", "notes.png")]


def test_bad_files_raise_input_error_naming_the_file(picture, tmp_path) -> None:
    for path in _bad_files(picture, tmp_path):
        for read in (read_image, check_image, LoadMask()):
            with pytest.raises(InputError) as info:
                read(path)
            assert str(path) in str(info.value) and "\n" not in str(info.value), (read, path)
        # inside a whole pipeline (as training, evaluation and inference run it), the one-line message survives
        pipeline = get_transforms("endoscopy", spatial_size=(64, 64), with_label=False)[1]
        with pytest.raises(Exception) as info:
            pipeline({"image": str(path)})
        message = input_error_message(info.value)
        assert message is not None and str(path) in message, message


def test_cvc_style_tiff_pair_images_and_masks_agree(picture, tmp_path) -> None:
    """A 288x384 (rows x columns) CVC-ClinicDB-like TIFF pair: same spatial shape, mask on the right pixels."""
    rgb = np.asarray(Image.fromarray(picture).resize((384, 288)))
    mask = np.zeros((288, 384), dtype=np.uint8)
    mask[20:60, 200:330] = 255  # asymmetric, so that a transpose or flip moves it
    rgb = rgb.copy()
    rgb[mask > 0] = (0, 255, 0)
    tifffile.imwrite(tmp_path / "1.tif", rgb, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "1_mask.tif", np.dstack([mask] * 3), photometric="minisblack", planarconfig="contig")
    data = LoadRGBImaged("image")({"image": str(tmp_path / "1.tif")})
    image = data["image"]
    assert image.shape == (3, 288, 384) and image.dtype == torch.float32
    assert tuple(image.meta["spatial_shape"]) == (288, 384)
    label = LoadMask()(tmp_path / "1_mask.tif")
    assert label.shape == (1, 288, 384)
    np.testing.assert_array_equal(label[0].numpy(), mask > 0)
    green = (image[0] == 0) & (image[1] == 255) & (image[2] == 0)
    np.testing.assert_array_equal(green.numpy(), mask > 0)
    # the whole eval pipeline at native size (no crop): image and label stay aligned pixel for pixel
    _, pipeline = get_transforms(
        "endoscopy",
        spatial_size=None,
        overrides={"cleanup#1#_disabled_": True},  # no border crop
    )
    out = pipeline({"image": str(tmp_path / "1.tif"), "label": str(tmp_path / "1_mask.tif")})
    assert out["image"].shape == (3, 288, 384) and out["label"].shape == (1, 288, 384)
    np.testing.assert_array_equal(out["label"][0].numpy(), mask > 0)


def test_one_reader_for_pictures_and_dicom(picture, fixtures_dir, tmp_path) -> None:
    """The package's reader (and its picture functions) read DICOM as the DICOM reader does, pictures as before."""
    from segdino_monai.io.dicom_reader import read_dicom

    dicom = fixtures_dir / "dicom/us/pydicom__pydicom-data/OBXXXX1A.dcm"
    Image.fromarray(picture).save(tmp_path / "frame.png")
    reader = SegDINOImageReader()
    load = LoadRGBImaged("image", reader=reader)
    assert reader.verify_suffix([str(tmp_path / "frame.png"), str(dicom)])
    png = load({"image": str(tmp_path / "frame.png")})["image"]
    np.testing.assert_array_equal(png.numpy(), np.moveaxis(picture, -1, 0).astype(np.float32))
    image = load({"image": str(dicom)})["image"]
    expected = read_dicom(dicom)
    np.testing.assert_array_equal(image.numpy(), expected.numpy())
    assert image.meta["ultrasound_region"] == ([60, 120], [519, 800])
    assert image.meta["pixel_size_mm"] == pytest.approx([0.26228787661969977] * 2)
    # the picture functions: the DICOM image rounded to 8 bits, its size from the header
    rgb = read_image(dicom)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.clip(np.rint(np.moveaxis(expected.numpy(), 0, -1)), 0, 255))
    assert image_size(dicom) == check_image(dicom) == (800, 600)
    cine = fixtures_dir / "dicom/us/pydicom__pydicom/examples_ybr_color.dcm"
    np.testing.assert_array_equal(read_image(cine, frame=4), np.rint(np.moveaxis(read_dicom(cine, 4).numpy(), 0, -1)))
    with pytest.raises(InputError, match="30 frames"):
        read_image(cine)
    # a DICOM object that is not an image is refused by the file check, naming it
    seg = fixtures_dir / "dicom/seg/ImagingDataCommons__highdicom/seg_image_ct_binary.dcm"
    with pytest.raises(InputError, match=rf"{seg.name}: SOP class .* segmentation"):
        check_image(seg)


def test_dicom_through_the_ultrasound_preset(fixtures_dir) -> None:
    """The preset's own loader reads DICOM, and its region crop uses the region the reader found."""
    dicom = fixtures_dir / "dicom/us/pydicom__pydicom-data/OBXXXX1A.dcm"
    _, pipeline = get_transforms("ultrasound", spatial_size=None, with_label=False)
    out = pipeline({"image": str(dicom)})["image"]
    crop = next(op for op in out.applied_operations if "Crop" in op["class"])
    assert out.shape[1:] == (464, 688)  # 459 x 680 cropped, padded to a multiple of 16
    assert crop["orig_size"] == (600, 800)
