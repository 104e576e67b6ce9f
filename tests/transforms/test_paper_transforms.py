"""The paper protocol's pipeline against the SegDINO reference code's own steps, redone here with PIL and numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Randomizable
from PIL import Image

from segdino_monai.transforms import PILResized
from segdino_monai.utils.errors import InputError
from segdino_monai.workflows.configs import get_transforms

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float64)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float64)


def reference(image: Path, mask: Path, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``dataset.py`` of script-Yang/segdino: RGB, PIL bicubic resize, /255, ImageNet mean/std; mask nearest > 0.5."""
    height, width = size
    rgb = Image.open(image).convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    x = ((np.asarray(rgb, dtype=np.float64) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    grey = Image.open(mask).convert("L").resize((width, height), Image.Resampling.NEAREST)
    return x, (np.asarray(grey, dtype=np.float64) / 255.0 > 0.5)[None]


# (images folder, mask name from image name): RGB JPEG, grey PNG of several widths, large RGB JPEG
CASES = {
    "endoscopy/cvc_endoscene_512": lambda name: name,
    "ultrasound/ddti": lambda name: name,
    "dermoscopy/isic2017_val": lambda name: name.replace(".jpg", "_segmentation.png"),
}


@pytest.mark.parametrize("subset", sorted(CASES))
@pytest.mark.parametrize("size", [(256, 256), (64, 96)])
def test_paper_pipeline_equals_the_reference_code(fixtures_dir: Path, subset: str, size: tuple[int, int]) -> None:
    train, evaluate = get_transforms("endoscopy", protocol="paper", spatial_size=size)
    images = sorted((fixtures_dir / subset / "images").iterdir())
    for image in images[:: max(1, len(images) // 3)][:3]:
        mask = fixtures_dir / subset / "masks" / CASES[subset](image.name)
        expected_image, expected_label = reference(image, mask, size)
        for pipeline in (train, evaluate):
            out = pipeline({"image": str(image), "label": str(mask)})
            assert out["image"].shape == (3, *size) and out["image"].dtype == torch.float32
            assert out["label"].shape == (1, *size) and out["label"].dtype == torch.float32
            np.testing.assert_allclose(out["image"].numpy(), expected_image, atol=1e-5)
            assert out["image"].mean().item() == pytest.approx(expected_image.mean(), abs=1e-6)
            assert out["image"].std().item() == pytest.approx(expected_image.std(ddof=1), abs=1e-6)
            np.testing.assert_array_equal(out["label"].numpy().astype(bool), expected_label)
            assert out["image"].meta["filename_or_obj"] == str(image)  # evaluation reports name the images by it


def test_train_equals_eval_and_nothing_is_random(fixtures_dir: Path) -> None:
    train, evaluate = get_transforms("ultrasound", protocol="paper", spatial_size=(64, 64))
    assert train is not evaluate
    steps = [type(t).__name__ for t in train.flatten().transforms]
    assert steps == [type(t).__name__ for t in evaluate.flatten().transforms]
    assert not any(isinstance(t, Randomizable) for t in train.flatten().transforms)
    assert "PILResized" in steps and not any("Crop" in s or "CLAHE" in s for s in steps)  # no modality clean-up
    image = sorted((fixtures_dir / "ultrasound" / "ddti" / "images").iterdir())[0]
    entry = {"image": str(image), "label": str(fixtures_dir / "ultrasound" / "ddti" / "masks" / image.name)}
    first, second = train(dict(entry)), train(dict(entry))
    assert torch.equal(first["image"], second["image"]) and torch.equal(first["label"], second["label"])
    image_only = get_transforms("ultrasound", protocol="paper", spatial_size=(64, 64), with_label=False)[1](
        {"image": entry["image"]}
    )
    assert torch.equal(image_only["image"], first["image"]) and "label" not in image_only


def test_protocol_and_size_errors() -> None:
    with pytest.raises(InputError, match="protocol"):
        get_transforms("endoscopy", protocol="reference")
    with pytest.raises(InputError, match="modality"):
        get_transforms("radiology", protocol="paper")
    with pytest.raises(InputError, match="fixed spatial_size"):
        get_transforms("endoscopy", protocol="paper", spatial_size=None)
    with pytest.raises(ValueError, match="filter"):
        PILResized("image", (8, 8), mode="cubic")


def test_pil_resize_keeps_meta_and_scales_the_affine() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 40, 30)).astype(np.float32)
    image = MetaTensor(torch.from_numpy(pixels), meta={"filename_or_obj": "x.png"})
    out = PILResized("image", (20, 60), mode="bilinear")({"image": image})["image"]
    assert isinstance(out, MetaTensor) and out.shape == (3, 20, 60) and out.meta["filename_or_obj"] == "x.png"
    expected = [
        np.asarray(Image.fromarray(c.astype(np.uint8)).resize((60, 20), Image.Resampling.BILINEAR)) for c in pixels
    ]
    np.testing.assert_array_equal(out.numpy(), np.stack(expected))
    # a pixel step in the output is 40/20 = 2 input rows and 30/60 = 0.5 input columns
    assert out.affine[0, 0].item() == pytest.approx(2.0) and out.affine[1, 1].item() == pytest.approx(0.5)
