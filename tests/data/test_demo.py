from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from PIL import Image

from segdino_monai.cli import main
from segdino_monai.data.demo import MODALITIES, make_demo_dataset, make_demo_image


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("modality", MODALITIES)
def test_same_seed_byte_identical(tmp_path, modality):
    a = make_demo_dataset(tmp_path / "a", modality, num_images=4, size=(64, 64), seed=7)
    b = make_demo_dataset(tmp_path / "b", modality, num_images=4, size=(64, 64), seed=7)
    assert a.name == "datalist.json"
    files_a, files_b = _files(a.parent), _files(b.parent)
    assert sorted(files_a) == ["datalist.json"] + [
        f"{d}/demo_{i:03d}.png" for d in ("images", "masks") for i in range(4)
    ]
    assert files_a == files_b
    c = make_demo_dataset(tmp_path / "c", modality, num_images=4, size=(64, 64), seed=8)
    assert _files(c.parent)["images/demo_000.png"] != files_a["images/demo_000.png"]


@pytest.mark.parametrize(
    "modality,mode,lesion_darker",
    [("ultrasound", "L", True), ("endoscopy", "RGB", False), ("dermoscopy", "RGB", True)],
)
def test_masks_mark_the_lesion(tmp_path, modality, mode, lesion_darker):
    path = make_demo_dataset(tmp_path, modality, num_images=6, size=(96, 128), seed=0)
    for i in range(6):
        image = Image.open(path.parent / "images" / f"demo_{i:03d}.png")
        mask = np.asarray(Image.open(path.parent / "masks" / f"demo_{i:03d}.png"))
        assert image.mode == mode and image.size == (128, 96) and mask.shape == (96, 128)
        assert set(np.unique(mask)) == {0, 255}
        inside = mask == 255
        assert 0.01 < inside.mean() < 0.5
        grey = np.asarray(image.convert("L"), dtype=float)
        # compare with a ring around the lesion: the lesion must stand out from its surroundings
        rows, cols = np.nonzero(inside)
        box = grey[max(rows.min() - 8, 0) : rows.max() + 9, max(cols.min() - 8, 0) : cols.max() + 9]
        ring = ~inside[max(rows.min() - 8, 0) : rows.max() + 9, max(cols.min() - 8, 0) : cols.max() + 9]
        difference = box[ring].mean() - grey[inside].mean()
        assert (difference > 15) if lesion_darker else (difference < -15), (modality, i, difference)


def test_datalist_counts(tmp_path):
    path = make_demo_dataset(tmp_path, "endoscopy", num_images=12, seed=0)
    summary = json.loads(path.read_text())["summary"]
    assert summary["counts"] == {"training": 9, "validation": 1, "test": 2}
    assert summary["modality"] == "endoscopy"
    loaded = {s: load_decathlon_datalist(path, data_list_key=s) for s in ("training", "validation", "test")}
    images = [Path(e["image"]) for v in loaded.values() for e in v]
    assert sorted(p.name for p in images) == [f"demo_{i:03d}.png" for i in range(12)]
    for entry in (e for v in loaded.values() for e in v):
        assert Path(entry["image"]).is_file() and Path(entry["label"]).is_file()
        assert Path(entry["label"]).parent.name == "masks" and Path(entry["label"]).name == Path(entry["image"]).name


def test_make_demo_image_shapes_and_errors():
    image, mask = make_demo_image("dermoscopy", (40, 50), seed=1, index=2)
    assert image.shape == (40, 50, 3) and image.dtype == np.uint8 and mask.shape == (40, 50) and mask.dtype == bool
    assert make_demo_image("ultrasound", (40, 50))[0].shape == (40, 50)
    with pytest.raises(ValueError, match="unknown modality 'xray'"):
        make_demo_image("xray")
    with pytest.raises(ValueError, match="at least 3"):
        make_demo_dataset("/nonexistent", num_images=2)


def test_cli_make_demo_data(tmp_path):
    assert (
        main(["make-demo-data", str(tmp_path / "demo"), "--modality", "ultrasound", "-n", "5", "--size", "64", "80"])
        == 0
    )
    datalist = json.loads((tmp_path / "demo" / "datalist.json").read_text())
    assert datalist["summary"]["counts"] == {"training": 3, "validation": 1, "test": 1}
    assert Image.open(tmp_path / "demo" / "images" / "demo_004.png").size == (80, 64)
    with pytest.raises(SystemExit) as info:  # argparse rejects an unknown modality
        main(["make-demo-data", str(tmp_path / "x"), "--modality", "xray"])
    assert info.value.code == 2
    assert not (tmp_path / "x").exists()
