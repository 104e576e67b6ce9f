from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.transforms import Invertd

from segdino_monai.data import LoadMask
from segdino_monai.utils.errors import InputError
from segdino_monai.workflows.configs import get_transforms

# subset -> (modality, mask name from image name, how many pairs to run)
SETS = {
    "endoscopy/kvasir_seg_256": ("endoscopy", lambda name: name, 12),
    "endoscopy/cvc_endoscene_512": ("endoscopy", lambda name: name, 24),
    "dermoscopy/ham10000": ("dermoscopy", lambda name: name.replace(".jpg", ".png"), 8),
    "dermoscopy/isic2017_val": ("dermoscopy", lambda name: name.replace(".jpg", "_segmentation.png"), 8),
    "ultrasound/busi_rgbmask": ("ultrasound", lambda name: name, 30),
    "ultrasound/ddti": ("ultrasound", lambda name: name, 12),
}


def _pairs(root: Path, subset: str) -> list[dict[str, str]]:
    _, mask_name, count = SETS[subset]
    images = sorted((root / subset / "images").iterdir())
    step = max(1, len(images) // count)
    return [
        {"image": str(p), "label": str(root / subset / "masks" / mask_name(p.name))} for p in images[::step][:count]
    ]


@pytest.mark.parametrize("subset", sorted(SETS))
def test_eval_preset_on_every_fixture_set(fixtures_dir: Path, subset: str) -> None:
    modality = SETS[subset][0]
    _, evaluate = get_transforms(modality, spatial_size=(256, 256))
    foreground = 0
    for entry in _pairs(fixtures_dir, subset):
        out = evaluate(entry)
        image, label = out["image"], out["label"]
        assert image.shape == (3, 256, 256) and image.dtype == torch.float32, entry
        assert label.shape == (1, 256, 256) and label.dtype == torch.float32, entry
        assert set(torch.unique(label).tolist()) <= {0.0, 1.0}, entry
        assert -2.2 < float(image.min()) and float(image.max()) < 2.7  # ImageNet-normalised 0..1 input
        foreground += int(label.sum() > 0)
        again = evaluate(entry)
        assert torch.equal(again["image"], image) and torch.equal(again["label"], label)  # deterministic
    assert foreground >= len(_pairs(fixtures_dir, subset)) - 1  # lesions survive the clean-up crops


def test_train_preset_and_inversion(fixtures_dir: Path) -> None:
    entry = _pairs(fixtures_dir, "ultrasound/busi_rgbmask")[0]
    colours = [[0, 255, 0], [255, 0, 0]]  # as a config holds them: green is class 1, red class 2
    train, evaluate = get_transforms("ultrasound", overrides={"class_colors": colours})
    out = train.set_random_state(seed=0)(entry)
    assert out["image"].shape == (3, 256, 256) and out["label"].shape == (1, 256, 256)
    assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0, 2.0}
    original = LoadMask(class_colors=colours)(entry["label"])
    data = evaluate(entry)
    restored = Invertd("label", transform=evaluate, orig_keys="image", nearest_interp=True)(data)["label"]
    assert restored.shape[1:] == original.shape[1:]
    matched = (restored.round().to(torch.uint8) == original).float().mean()
    assert matched > 0.98


def test_native_size_pads_to_patch_multiple(fixtures_dir: Path) -> None:
    entry = _pairs(fixtures_dir, "ultrasound/ddti")[0]
    _, evaluate = get_transforms("ultrasound", spatial_size=None)
    out = evaluate(entry)
    assert out["image"].shape[1] % 16 == 0 and out["image"].shape[2] % 16 == 0
    assert out["image"].shape[1:] == out["label"].shape[1:]


def test_unknown_modality() -> None:
    with pytest.raises(InputError, match="modality"):
        get_transforms("radiology")


@pytest.mark.parametrize("modality", ["ultrasound", "endoscopy", "dermoscopy"])
def test_image_only_pipeline_matches_the_labelled_one(fixtures_dir: Path, modality: str) -> None:
    folder = {"ultrasound": "ultrasound/ddti", "endoscopy": "endoscopy/cvc_endoscene_512"}.get(
        modality, "dermoscopy/ham10000"
    )
    image = sorted((fixtures_dir / folder / "images").iterdir())[0]
    label = sorted((fixtures_dir / folder / "masks").iterdir())[0]
    _, with_label = get_transforms(modality, spatial_size=None)
    _, image_only = get_transforms(modality, spatial_size=None, with_label=False)
    expected = with_label({"image": str(image), "label": str(label)})["image"]
    got = image_only({"image": str(image)})
    assert set(got) == {"image"}
    assert torch.equal(got["image"].as_tensor(), expected.as_tensor())
    assert got["image"].shape[1] % 16 == 0 and got["image"].shape[2] % 16 == 0
