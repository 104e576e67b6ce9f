from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from segdino_monai.transforms import (
    CLAHE,
    EnsureRGB,
    RandColorJitter,
    RandColorJitterd,
    RandSpeckleNoise,
    RandSpeckleNoised,
    ShadesOfGray,
)
from segdino_monai.workflows.configs import bundle_config_files, get_transforms


def _geometric(modality: str) -> list:
    """The modality's geometric augmentations, as its bundle config defines them (the ones moving the mask too)."""
    from monai.bundle import ConfigParser
    from monai.transforms import RandAffined, RandFlipd, RandRotate90d

    parser = ConfigParser()
    parser.read_config([str(f) for f in bundle_config_files(["train.json"], modality)])
    steps = parser.get_parsed_content("augmentation")
    return [t for t in steps if isinstance(t, (RandFlipd, RandRotate90d, RandAffined))]


def _synthetic_pair(seed: int = 0) -> dict[str, MetaTensor]:
    """An image of bright blobs on a dark background and the mask drawn from its content."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:96, :128]
    image = np.zeros((96, 128), np.float32)
    for _ in range(4):
        r, c, radius = rng.integers(20, 76), rng.integers(20, 108), rng.integers(6, 16)
        image[(rows - r) ** 2 + (cols - c) ** 2 < radius**2] = 0.9
    image[10:20, 5:60] = 0.9  # an elongated bar breaks the symmetries
    mask = (image > 0.5).astype(np.float32)
    return {"image": MetaTensor(np.stack([image] * 3)), "label": MetaTensor(mask[None])}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(1.0, float(a.sum() + b.sum()))


@pytest.mark.parametrize("modality", ["ultrasound", "dermoscopy"])
def test_geometric_keeps_image_and_mask_aligned(modality: str) -> None:
    steps = _geometric(modality)
    assert [type(t).__name__ for t in steps] == (
        ["RandFlipd", "RandAffined"]
        if modality == "ultrasound"
        else ["RandFlipd", "RandFlipd", "RandRotate90d", "RandAffined"]
    )
    pipeline = Compose(steps).set_random_state(seed=3)
    moved_any = 0
    for draw in range(12):
        pair = _synthetic_pair(draw)
        out = pipeline(pair)
        image_mask = out["image"][0].numpy() > 0.45
        label = out["label"][0].numpy() > 0.5
        assert set(np.unique(out["label"].numpy())) <= {0.0, 1.0}  # nearest interpolation keeps labels
        assert _dice(image_mask, label) > 0.95
        original = pair["label"][0].numpy() > 0.5
        moved_any += int(label.shape != original.shape or _dice(label, original) < 0.99)
    assert moved_any >= 6  # the augmentations did move things


def test_same_seed_same_output() -> None:
    first = Compose(_geometric("dermoscopy")).set_random_state(seed=7)
    second = Compose(_geometric("dermoscopy")).set_random_state(seed=7)
    other = Compose(_geometric("dermoscopy")).set_random_state(seed=8)
    outs = [[t(_synthetic_pair(i))["image"] for i in range(4)] for t in (first, second, other)]
    assert all(torch.equal(a, b) for a, b in zip(outs[0], outs[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(outs[0], outs[2], strict=True))


@pytest.mark.parametrize("modality", ["ultrasound", "endoscopy", "dermoscopy"])
def test_train_pipelines_seeded(modality: str, tmp_path) -> None:
    from PIL import Image

    pair = _synthetic_pair(1)
    image = (np.moveaxis(pair["image"].numpy(), 0, -1) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "i.png")
    Image.fromarray((pair["label"][0].numpy() * 255).astype(np.uint8)).save(tmp_path / "m.png")
    entry = {"image": str(tmp_path / "i.png"), "label": str(tmp_path / "m.png")}
    runs = []
    for seed in (5, 5, 6):
        no_hair_removal = {"cleanup#2#_disabled_": True} if modality == "dermoscopy" else {}
        train, _ = get_transforms(modality, spatial_size=(64, 64), overrides=no_hair_removal)
        train.set_random_state(seed=seed)
        runs.append([train(entry) for _ in range(3)])
    for a, b in zip(runs[0], runs[1], strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert any(not torch.equal(a["image"], c["image"]) for a, c in zip(runs[0], runs[2], strict=True))


def test_speckle_is_multiplicative_and_shared() -> None:
    image = torch.zeros(3, 64, 64)
    image[:, :, 32:] = 0.8
    out = RandSpeckleNoise(prob=1.0, std_range=(0.2, 0.2)).set_random_state(0)(image)
    assert torch.all(out[:, :, :32] == 0)  # black stays black
    assert 0.1 < float(out[0, :, 32:].std() / 0.8) < 0.3
    assert torch.equal(out[0], out[1])
    d = RandSpeckleNoised(["image"], prob=1.0).set_random_state(1)({"image": image})
    again = RandSpeckleNoised(["image"], prob=1.0).set_random_state(1)({"image": image})
    assert torch.equal(d["image"], again["image"]) and not torch.equal(d["image"], image)


def test_colour_jitter_seeded_and_in_range() -> None:
    image = torch.rand(3, 32, 32)
    a = RandColorJitter(prob=1.0, hue=0.1).set_random_state(2)(image)
    b = RandColorJitterd(["image"], prob=1.0, hue=0.1).set_random_state(2)({"image": image})["image"]
    assert torch.allclose(a, b) and not torch.allclose(a, image)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_shades_of_gray_equalises_channel_means() -> None:
    rng = np.random.default_rng(0)
    scene = rng.uniform(0.2, 0.8, (1, 64, 64)).astype(np.float32)
    cast = np.concatenate([scene * 1.0, scene * 0.7, scene * 0.45])  # a warm colour cast
    out = ShadesOfGray(power=6)(cast)
    before, after = cast.reshape(3, -1).mean(1), out.reshape(3, -1).mean(1)
    assert before.max() / before.min() > 2.0
    assert after.max() / after.min() < 1.05


def test_clahe_raises_local_contrast_and_keeps_scale() -> None:
    rows = np.linspace(0, 1, 128, dtype=np.float32)[:, None]
    texture = 0.05 * np.sin(np.arange(128, dtype=np.float32) / 2)[None, :]
    image = np.stack([(0.3 + 0.2 * rows + texture) * 255] * 3)
    out = CLAHE(clip_limit=0.02)(image)
    assert out.shape == image.shape and out.max() <= 255.0 and out.max() > 100
    assert np.array_equal(out[0], out[2])
    assert out[0].std(axis=1).mean() > 1.5 * image[0].std(axis=1).mean()


def test_ensure_rgb() -> None:
    assert EnsureRGB()(torch.ones(1, 4, 5)).shape == (3, 4, 5)
    assert EnsureRGB()(np.ones((4, 4, 5))).shape == (3, 4, 5)
    with pytest.raises(ValueError, match="channels"):
        EnsureRGB()(torch.ones(5, 4, 4))
