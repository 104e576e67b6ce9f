"""The presets on real-world inputs: the same picture in other storage modes, and photos larger than the model.

Model inputs are compared between twins of one picture (a Kvasir-SEG frame from the shared fixtures); before the
package's image reader, a 16-bit grey PNG was clipped to white and a palette PNG read as its indices.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, Invertd
from PIL import Image

from segdino_monai.transforms.spatial import ShrinkLongest, ShrinkLongestd
from segdino_monai.workflows.configs import get_transforms


@pytest.fixture(scope="module")
def picture(fixtures_dir: Path) -> np.ndarray:
    path = sorted((fixtures_dir / "endoscopy" / "kvasir_seg_256" / "images").glob("*.jpg"))[0]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))[:, :200].copy()  # 256 rows x 200 columns


def _model_input(path: Path, modality: str = "endoscopy") -> torch.Tensor:
    _, pipeline = get_transforms(modality, spatial_size=(64, 64), with_label=False)
    return pipeline({"image": str(path)})["image"]


@pytest.mark.parametrize("modality", ["endoscopy", "dermoscopy", "ultrasound"])
def test_lossless_twins_give_the_same_model_input(modality, picture, tmp_path) -> None:
    quantized = Image.fromarray(picture).quantize(256)
    quantized.save(tmp_path / "palette.png")
    quantized.convert("RGB").save(tmp_path / "rgb.png")
    grey = np.asarray(Image.fromarray(picture).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    palette, rgb = _model_input(tmp_path / "palette.png", modality), _model_input(tmp_path / "rgb.png", modality)
    assert palette.shape == rgb.shape == (3, 64, 64)
    torch.testing.assert_close(palette, rgb, rtol=0, atol=0)
    grey8, grey16 = _model_input(tmp_path / "grey8.png", modality), _model_input(tmp_path / "grey16.png", modality)
    torch.testing.assert_close(grey16, grey8, rtol=0, atol=0)
    assert not torch.equal(grey8, rgb)  # the twins are compared with their own kind, not with anything


def test_cmyk_jpeg_gives_the_model_input_of_its_rgb_twin(picture, tmp_path) -> None:
    """CMYK JPEG vs the lossless RGB file: within what an RGB JPEG of the same quality differs (times 1.5)."""
    Image.fromarray(picture).save(tmp_path / "rgb.png")
    Image.fromarray(picture).save(tmp_path / "rgb.jpg", quality=95)
    Image.fromarray(picture).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    reference = _model_input(tmp_path / "rgb.png")
    jpeg_error = (_model_input(tmp_path / "rgb.jpg") - reference).abs().mean()
    cmyk_error = (_model_input(tmp_path / "cmyk.jpg") - reference).abs().mean()
    assert 0 < jpeg_error < 0.05  # normalised units (about 0.01 per 8-bit level)
    assert cmyk_error < 1.5 * jpeg_error


def test_shrink_longest_only_shrinks_and_inverts_to_the_original_size() -> None:
    shrink = ShrinkLongest(100)
    small = torch.rand(3, 40, 90)
    out = shrink(small)
    assert out.shape == (3, 40, 90) and torch.equal(out.as_tensor(), small)
    assert shrink.inverse(out).shape == (3, 40, 90)
    ramp = torch.linspace(0, 1, 300)[None, None].repeat(1, 200, 1)  # (1, 200, 300), rises from left to right
    down = shrink(ramp)
    assert down.shape == (1, 67, 100)
    # area mode: each output pixel is the mean of its 3x3 block (independent computation)
    expected = ramp[0, :198, :300].reshape(66, 3, 100, 3).mean(dim=(1, 3))
    torch.testing.assert_close(down[0, :66], expected, atol=1e-5, rtol=0)
    up = shrink.inverse(down)
    assert up.shape == (1, 200, 300)
    # the inverse is bilinear: smooth (monotonic along the ramp, no 3-pixel steps), close to the original
    assert (up[0, 100, 2:-2].diff() > 0).all()
    assert (up - ramp).abs().max() < 0.01


def test_large_photo_is_shrunk_first_and_the_prediction_restored_to_its_size(picture, tmp_path) -> None:
    """A 3000x2000 photo: the model input is 64x64, the inverted prediction 2000x3000, aligned with the picture."""
    photo = np.asarray(Image.fromarray(picture).resize((3000, 2000), Image.Resampling.BILINEAR)).copy()
    photo[:, :1500] = (photo[:, :1500] * 0.3).astype(np.uint8)  # left half darker: a landmark to check alignment
    Image.fromarray(photo).save(tmp_path / "large.png")
    _, pipeline = get_transforms(
        "dermoscopy",
        spatial_size=(64, 64),
        with_label=False,
        overrides={"cleanup#1#_disabled_": True},  # no vignette crop
    )
    data = pipeline({"image": str(tmp_path / "large.png")})
    assert data["image"].shape == (3, 64, 64)
    shrink = next(op for op in data["image"].applied_operations if op["class"] == "ShrinkLongest")
    assert [int(s) for s in shrink["orig_size"]] == [2000, 3000]
    data["pred"] = data["image"][:1].clone()  # a stand-in prediction: the model input's red channel
    restored = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=False)(data)["pred"]
    assert restored.shape == (1, 2000, 3000)
    left, right = restored[0, :, 100:1400].mean(), restored[0, :, 1600:2900].mean()
    assert left < right - 0.5  # the dark half is on the left at the original size, too


def test_masks_shrink_with_nearest_and_keep_their_classes() -> None:
    mask = torch.zeros(1, 1000, 1500)
    mask[0, 100:400, 200:900] = 2
    image = torch.rand(3, 1000, 1500)
    out = Compose([ShrinkLongestd(["image", "label"], 300, mode=("area", "nearest"))])({"image": image, "label": mask})
    assert out["image"].shape == (3, 200, 300) and out["label"].shape == (1, 200, 300)
    assert set(out["label"].unique().tolist()) == {0.0, 2.0}
    assert out["label"][0, 20:80, 40:180].eq(2).all() and out["label"][0, 81:, :].eq(0).all()


def test_one_shrink_shared_by_threads_gives_each_image_its_own_size() -> None:
    """A MONAI Label server runs one pipeline in several threads: sizes must not leak from one call to another."""
    shrink = ShrinkLongestd("image", 64)
    shapes = [(3, 300, 100), (3, 100, 400), (3, 50, 60), (3, 640, 640)] * 25
    expected = {(3, 300, 100): (3, 64, 21), (3, 100, 400): (3, 16, 64), (3, 50, 60): (3, 50, 60)}
    expected[(3, 640, 640)] = (3, 64, 64)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(lambda shape: shrink({"image": torch.rand(shape)})["image"].shape, shapes))
    assert [tuple(o) for o in outputs] == [expected[s] for s in shapes]


@pytest.mark.parametrize("factor", [1, 3, 4])
def test_block_mean_equals_skimage_local_mean_without_full_size_copies(factor) -> None:
    from skimage.transform import downscale_local_mean

    from segdino_monai.transforms.utils import block_mean

    image = np.random.default_rng(factor).random((3, 101, 77)).astype(np.float32)
    height, width = 101 // factor * factor, 77 // factor * factor
    expected = downscale_local_mean(image[:, :height, :width], (1, factor, factor))
    np.testing.assert_allclose(block_mean(image, factor), expected, rtol=1e-6, atol=1e-7)
    mask = image[0] > 0.9  # boolean masks: the fraction of True pixels per block
    expected_mask = downscale_local_mean(mask[:height, :width].astype(np.float64), (factor, factor))
    np.testing.assert_allclose(block_mean(mask, factor), expected_mask, rtol=0, atol=1e-12)
