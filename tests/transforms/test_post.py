from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, Invertd, LoadImaged, Resized
from PIL import Image

from segdino_monai.transforms import EndoscopyBorderCropd, SaveSegmentationd, prediction_postprocessing


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
