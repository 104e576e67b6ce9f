from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Resized
from PIL import Image

from segdino_monai.transforms import (
    OUTPUT_NAME_KEY,
    EndoscopyBorderCropd,
    SaveSegmentationd,
    output_names,
    prediction_postprocessing,
    with_output_names,
)
from segdino_monai.utils.errors import InputError


def framed_image(tmp_path, h=60, w=80, border=10):
    """An RGB image with a black frame, saved as PNG, and the pipeline that crops the frame and resizes."""
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[border:-border, border:-border] = (180, 120, 100)
    Image.fromarray(rgb).save(tmp_path / "framed.png")
    pre = Compose(
        [
            LoadImaged("image", reader="PILReader", reverse_indexing=False, image_only=True),
            EnsureChannelFirstd("image", channel_dim=-1),
            EndoscopyBorderCropd("image"),
            Resized("image", (32, 32)),
        ]
    )
    return pre, pre({"image": str(tmp_path / "framed.png")})


@pytest.mark.parametrize(("num_classes", "logit"), [(1, -3.0), (1, 3.0), (3, None)])
def test_inverted_crop_padding_is_background(tmp_path, num_classes, logit):
    pre, data = framed_image(tmp_path)
    assert [op["class"] for op in data["image"].applied_operations] == ["CropForeground", "Resize"]
    logits = torch.full((num_classes, 32, 32), logit if logit is not None else 0.0)
    if num_classes == 3:
        logits[2] = 4.0  # class 2 everywhere inside the crop
    pred = MetaTensor(logits, meta=data["image"].meta, applied_operations=data["image"].applied_operations)
    invert = Invertd("pred", transform=pre, orig_keys="image", nearest_interp=False)
    out = prediction_postprocessing(num_classes, invert=invert)({"pred": pred, "image": data["image"]})["pred"]
    assert out.shape == (1, 60, 80)
    inside = np.zeros((60, 80), bool)
    inside[10:-10, 10:-10] = True
    expected = 0 if (logit is not None and logit < 0) else (1 if num_classes == 1 else 2)
    assert (out[0][~torch.as_tensor(inside)] == 0).all()  # the padded frame is background, never 0.5 >= 0.5
    assert (out[0][torch.as_tensor(inside)] == expected).all()


def test_postprocessing_options():
    logits = torch.full((1, 20, 20), -5.0)
    logits[0, 2:6, 2:6] = 5.0  # small blob
    logits[0, 10:18, 10:18] = 5.0  # large blob with a hole
    logits[0, 13:15, 13:15] = -5.0
    out = prediction_postprocessing(1, largest_component=True, fill_holes=True)({"pred": logits})["pred"]
    expected = torch.zeros(1, 20, 20)
    expected[0, 10:18, 10:18] = 1
    assert torch.equal(out.float(), expected)


def test_save_segmentation_writes_aligned_mask_overlay_and_nifti(tmp_path):
    h, w = 30, 50
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(tmp_path / "case 1.png")
    mask = torch.zeros(1, h, w, dtype=torch.uint8)
    mask[0, 5:10, 20:45] = 1
    pred = MetaTensor(mask, meta={"filename_or_obj": str(tmp_path / "case 1.png")})
    out_dir = tmp_path / "out"
    SaveSegmentationd("pred", out_dir, nifti=True)({"pred": pred})
    written = np.asarray(Image.open(out_dir / "case 1_mask.png"))
    assert written.shape == (h, w) and (written == mask[0].numpy() * 255).all()
    overlay = np.asarray(Image.open(out_dir / "case 1_overlay.png"))
    assert (overlay[7, 30] != 100).any() and (overlay[0, 0] == 100).all()  # coloured inside, untouched outside
    volume = np.asarray(nib.load(out_dir / "case 1_mask.nii.gz").dataobj)
    assert volume.shape == (w, h) and (volume.T == mask[0].numpy()).all()
    assert sorted(p.name for p in out_dir.iterdir()) == ["case 1_mask.nii.gz", "case 1_mask.png", "case 1_overlay.png"]


def test_save_segmentation_rejects_one_hot(tmp_path):
    pred = MetaTensor(torch.zeros(2, 4, 4), meta={"filename_or_obj": str(tmp_path / "x.png")})
    with pytest.raises(ValueError, match=r"\(1, H, W\) class-index mask"):
        SaveSegmentationd("pred", tmp_path)({"pred": pred})


def test_overlay_on_a_resized_source_only_when_asked(tmp_path):
    """Masks kept at the model size (evaluation without inversion) are drawn on the source resized to them."""
    source = np.zeros((40, 60, 3), np.uint8)
    source[:, 30:] = 200  # right half bright: survives the resize at the same relative place
    Image.fromarray(source).save(tmp_path / "wide.png")
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 4:8, 2:6] = 1
    pred = MetaTensor(mask, meta={"filename_or_obj": str(tmp_path / "wide.png")})
    with pytest.raises(ValueError, match="differs from its mask"):
        SaveSegmentationd("pred", tmp_path / "strict")({"pred": pred})
    SaveSegmentationd("pred", tmp_path / "resized", resize_source=True)({"pred": pred})
    overlay = np.asarray(Image.open(tmp_path / "resized" / "wide_overlay.png")).astype(int)
    assert overlay.shape == (16, 16, 3)
    assert (overlay[0, 0] == 0).all() and (overlay[0, 15] == 200).all()  # the resized source outside the mask
    assert overlay[5, 3, 1] > overlay[5, 3, 0]  # green inside the mask


def test_output_names_keep_the_stem_and_separate_what_would_collide():
    sources = [
        "/d/b.png",
        "/d/a.jpg",
        "/d/a.png",  # same stem in one folder: the file name
        "/d/train/img.png",
        "/d/val/img.png",  # same file name in two folders: the sub-path
        "/d/C.png",
        "/d/x/c.jpg",  # a stem differing in case only collides on macOS/Windows file systems
        "/d/x/case.nii.gz",
    ]
    names = output_names(sources)
    assert names == {
        "/d/b.png": "b",
        "/d/a.jpg": "a.jpg",
        "/d/a.png": "a.png",
        "/d/train/img.png": "train/img",
        "/d/val/img.png": "val/img",
        "/d/C.png": "C.png",
        "/d/x/c.jpg": "c.jpg",
        "/d/x/case.nii.gz": "case",
    }
    assert output_names(reversed(sources)) == names  # the order of the datalist does not matter
    assert output_names(["/d/a.jpg", "/d/b.png"]) == {"/d/a.jpg": "a", "/d/b.png": "b"}


def test_output_names_are_distinct_ignoring_case_for_any_set_of_paths():
    rng = np.random.default_rng(0)
    parts = ["a", "A", "b", "a.jpg", "x"]
    for _ in range(200):
        sources = {
            "/r/" + "/".join(rng.choice(parts, size=rng.integers(1, 4))) + str(rng.choice([".png", ".jpg", ".PNG"]))
            for _ in range(rng.integers(1, 8))
        }
        names = output_names(sources)
        assert len({n.lower() for n in names.values()}) == len(sources), sources
        assert all(not n.startswith(("/", "..")) for n in names.values())


def test_images_sharing_a_stem_get_their_own_masks(tmp_path):
    sources = []
    for i, suffix in enumerate((".jpg", ".png")):
        Image.fromarray(np.full((8, 10, 3), 50 * i, np.uint8)).save(tmp_path / f"a{suffix}")
        sources.append(str(tmp_path / f"a{suffix}"))
    items = with_output_names([{"image": s} for s in sources])
    assert [item[OUTPUT_NAME_KEY] for item in items] == ["a.jpg", "a.png"]
    save = SaveSegmentationd("pred", tmp_path / "out", overlay=False)
    for i, item in enumerate(items):
        mask = torch.zeros(1, 8, 10, dtype=torch.uint8)
        mask[0, : i + 1] = 1  # one row for a.jpg, two for a.png
        pred = MetaTensor(mask, meta={"filename_or_obj": item["image"]})
        save({"pred": pred, OUTPUT_NAME_KEY: item[OUTPUT_NAME_KEY]})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg_mask.png", "a.png_mask.png"]
    assert (np.asarray(Image.open(tmp_path / "out" / "a.jpg_mask.png")) > 0).sum() == 10
    assert (np.asarray(Image.open(tmp_path / "out" / "a.png_mask.png")) > 0).sum() == 20


def test_without_names_a_second_image_never_overwrites_the_first(tmp_path, caplog):
    save = SaveSegmentationd("pred", tmp_path / "out", overlay=False)
    for i, folder in enumerate(("train", "val")):
        mask = torch.full((1, 4, 4), i, dtype=torch.uint8)
        save({"pred": MetaTensor(mask, meta={"filename_or_obj": f"/{folder}/img.png"})})
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(written) == 2 and written[0].startswith("img-") and written[1] == "img_mask.png"
    assert (np.asarray(Image.open(tmp_path / "out" / "img_mask.png")) == 0).all()  # the first image's mask kept
    assert "/train/img.png and /val/img.png would both write" in caplog.text
    with pytest.raises(ValueError, match="must be a relative path inside the output folder"):
        save({"pred": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/x.png"}), OUTPUT_NAME_KEY: "../x"})


def test_a_failing_overlay_leaves_no_mask_behind(tmp_path):
    """Every file of a sample is prepared before the first is written: no mask without its overlay."""
    pred = MetaTensor(torch.ones(1, 4, 4, dtype=torch.uint8), meta={"filename_or_obj": str(tmp_path / "gone.png")})
    with pytest.raises(InputError, match="gone.png: no such image file"):
        SaveSegmentationd("pred", tmp_path / "out")({"pred": pred})  # the source image was deleted meanwhile
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
