from __future__ import annotations

from pathlib import Path

import pytest

from segdino_monai.data import LAYOUTS, detect_layout, scan_layout

# folder under the shared fixtures, layout, pairs, layout detected by "auto"
FIXTURE_SETS = [
    ("endoscopy/kvasir_seg_256", "kvasir", 300, "generic"),
    ("endoscopy/cvc_endoscene_512", "cvc", 24, "generic"),
    ("dermoscopy/ham10000", "isic", 36, "generic"),
    ("dermoscopy/isic2017_val", "isic", 8, "generic"),
    ("ultrasound/busi_rgbmask", "busi", 30, "generic"),
    ("ultrasound/ddti", "ddti", 150, "generic"),
]


def _mask_stem(label: Path) -> str:
    return label.stem.removesuffix("_segmentation")


def test_registry_names():
    assert sorted(LAYOUTS) == ["busi", "cvc", "ddti", "generic", "isic", "kvasir", "tn3k"]


def test_kvasir(tmp_path, make_pairs):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["b", "a", "c"], image_ext=".jpg", mask_name="{stem}.jpg")
    (tmp_path / "kavsir_bboxes.json").write_text("{}")
    scan = scan_layout(tmp_path, "kvasir")
    assert [p.image.name for p in scan.pairs] == ["a.jpg", "b.jpg", "c.jpg"]
    assert [p.labels for p in scan.pairs] == [(tmp_path / "masks" / f"{s}.jpg",) for s in "abc"]
    assert all(p.split is None for p in scan.pairs) and scan.problems == []


def test_kvasir_nested_folder(tmp_path, make_pairs):
    make_pairs(tmp_path / "Kvasir-SEG" / "images", tmp_path / "Kvasir-SEG" / "masks", ["x", "y"])
    scan = scan_layout(tmp_path, "kvasir")
    assert [p.image.parent.parent.name for p in scan.pairs] == ["Kvasir-SEG", "Kvasir-SEG"]
    assert len(scan.pairs) == 2


def test_cvc_clinicdb_tiff(tmp_path, make_pairs):
    make_pairs(tmp_path / "Original", tmp_path / "Ground Truth", ["1", "2", "10"], ".tif", "{stem}.tif")
    scan = scan_layout(tmp_path, "cvc")
    assert [p.image.name for p in scan.pairs] == ["1.tif", "10.tif", "2.tif"]
    assert [p.labels[0].parent.name for p in scan.pairs] == ["Ground Truth"] * 3
    assert detect_layout(tmp_path) == "cvc"


def test_cvc_png_variant_preferred_over_tif(tmp_path, make_pairs):
    make_pairs(tmp_path / "PNG" / "Original", tmp_path / "PNG" / "Ground Truth", ["1", "2"])
    make_pairs(tmp_path / "TIF" / "Original", tmp_path / "TIF" / "Ground Truth", ["1", "2"], ".tif", "{stem}.tif")
    scan = scan_layout(tmp_path, "cvc")
    assert [p.image.relative_to(tmp_path).as_posix() for p in scan.pairs] == [
        "PNG/Original/1.png",
        "PNG/Original/2.png",
    ]


def test_official_split_folders(tmp_path, make_pairs):
    for split, stems in (("TrainDataset", "abcd"), ("ValidationDataset", "e"), ("TestDataset", "fg")):
        make_pairs(tmp_path / split / "images", tmp_path / split / "masks", list(stems))
    scan = scan_layout(tmp_path, "cvc")
    assert {p.image.stem: p.split for p in scan.pairs} == {
        **dict.fromkeys("abcd", "training"),
        "e": "validation",
        **dict.fromkeys("fg", "test"),
    }


def test_isic_official_2017(tmp_path, make_pairs, make_image):
    folders = {"training": "Training", "validation": "Validation", "test": "Test_v2"}
    stems = {"training": ["ISIC_0000000", "ISIC_0000001"], "validation": ["ISIC_0001769"], "test": ["ISIC_0012086"]}
    for split, name in folders.items():
        data, truth = tmp_path / f"ISIC-2017_{name}_Data", tmp_path / f"ISIC-2017_{name}_Part1_GroundTruth"
        make_pairs(data, truth, stems[split], ".jpg", "{stem}_segmentation.png")
        for stem in stems[split]:
            make_image(data / f"{stem}_superpixels.png")
        (data / f"ISIC-2017_{name}_Data_metadata.csv").write_text("image_id,age\n")
    assert detect_layout(tmp_path) == "isic"
    scan = scan_layout(tmp_path, "isic")
    assert scan.problems == []
    assert [(p.image.name, p.split) for p in scan.pairs] == [
        ("ISIC_0000000.jpg", "training"),
        ("ISIC_0000001.jpg", "training"),
        ("ISIC_0001769.jpg", "validation"),
        ("ISIC_0012086.jpg", "test"),
    ]
    assert [p.labels[0].name for p in scan.pairs][0] == "ISIC_0000000_segmentation.png"


def test_isic_2016_and_2018_names(tmp_path, make_pairs):
    make_pairs(
        tmp_path / "2016" / "ISBI2016_ISIC_Part1_Training_Data",
        tmp_path / "2016" / "ISBI2016_ISIC_Part1_Training_GroundTruth",
        ["ISIC_0000000"],
        ".jpg",
        "{stem}_Segmentation.png",
    )
    make_pairs(
        tmp_path / "2016" / "ISBI2016_ISIC_Part1_Test_Data",
        tmp_path / "2016" / "ISBI2016_ISIC_Part1_Test_GroundTruth",
        ["ISIC_0000003"],
        ".jpg",
        "{stem}_Segmentation.png",
    )
    scan = scan_layout(tmp_path / "2016", "isic")
    assert [(p.image.stem, p.labels[0].name, p.split) for p in scan.pairs] == [
        ("ISIC_0000000", "ISIC_0000000_Segmentation.png", "training"),
        ("ISIC_0000003", "ISIC_0000003_Segmentation.png", "test"),
    ]
    for split in ("Training", "Validation"):
        make_pairs(
            tmp_path / "2018" / f"ISIC2018_Task1-2_{split}_Input",
            tmp_path / "2018" / f"ISIC2018_Task1_{split}_GroundTruth",
            [f"ISIC_{split}"],
            ".jpg",
            "{stem}_segmentation.png",
        )
    scan = scan_layout(tmp_path / "2018", "auto")
    assert scan.layout == "isic"
    assert [(p.image.stem, p.split) for p in scan.pairs] == [
        ("ISIC_Training", "training"),
        ("ISIC_Validation", "validation"),
    ]


def test_isic_flat(tmp_path, make_pairs):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["ISIC_1", "ISIC_2"], ".jpg", "{stem}_segmentation.png")
    scan = scan_layout(tmp_path, "isic")
    assert [p.labels[0].name for p in scan.pairs] == ["ISIC_1_segmentation.png", "ISIC_2_segmentation.png"]


def test_tn3k(tmp_path, make_pairs):
    make_pairs(tmp_path / "trainval-image", tmp_path / "trainval-mask", ["0000", "0001", "0002"], ".jpg", "{stem}.jpg")
    make_pairs(tmp_path / "test-image", tmp_path / "test-mask", ["0000", "0001"], ".jpg", "{stem}.jpg")
    assert detect_layout(tmp_path) == "tn3k"
    scan = scan_layout(tmp_path, "tn3k")
    assert [(p.image.parent.name, p.image.name, p.split) for p in scan.pairs] == [
        ("trainval-image", "0000.jpg", "training"),
        ("trainval-image", "0001.jpg", "training"),
        ("trainval-image", "0002.jpg", "training"),
        ("test-image", "0000.jpg", "test"),
        ("test-image", "0001.jpg", "test"),
    ]
    assert all(p.labels[0].parent.name == p.image.parent.name.replace("image", "mask") for p in scan.pairs)


def test_busi_official_multi_mask(tmp_path, make_image):
    base = tmp_path / "Dataset_BUSI_with_GT"
    for name in ("benign (1)", "benign (2)", "benign (10)"):
        make_image(base / "benign" / f"{name}.png")
        make_image(base / "benign" / f"{name}_mask.png", mode="L")
    make_image(base / "benign" / "benign (2)_mask_1.png", mode="L")
    make_image(base / "benign" / "benign (2)_mask_2.png", mode="L")
    make_image(base / "malignant" / "malignant (1).png")
    make_image(base / "malignant" / "malignant (1)_mask.png", mode="L")
    make_image(base / "normal" / "normal (1).png")
    make_image(base / "normal" / "normal (1)_mask.png", mode="L")
    assert detect_layout(tmp_path) == "busi"
    scan = scan_layout(tmp_path, "busi")
    assert scan.problems == []
    got = {p.image.name: ([m.name for m in p.labels], p.group) for p in scan.pairs}
    assert got == {
        "benign (1).png": (["benign (1)_mask.png"], "benign"),
        "benign (2).png": (["benign (2)_mask.png", "benign (2)_mask_1.png", "benign (2)_mask_2.png"], "benign"),
        "benign (10).png": (["benign (10)_mask.png"], "benign"),
        "malignant (1).png": (["malignant (1)_mask.png"], "malignant"),
        "normal (1).png": (["normal (1)_mask.png"], "normal"),
    }


def test_busi_unpaired_image_in_class_folder(tmp_path, make_image):
    make_image(tmp_path / "benign" / "benign (1).png")
    make_image(tmp_path / "benign" / "benign (2).png")
    make_image(tmp_path / "benign" / "benign (2)_mask.png", mode="L")
    make_image(tmp_path / "malignant" / "malignant (1).png")
    make_image(tmp_path / "malignant" / "malignant (1)_mask.png", mode="L")
    scan = scan_layout(tmp_path, "busi")
    assert [p.image.name for p in scan.pairs] == ["benign (2).png", "malignant (1).png"]
    assert [(pr.kind, pr.path.name) for pr in scan.problems] == [("unpaired image", "benign (1).png")]


def test_ddti_uppercase_extension(tmp_path, make_pairs):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["1", "2"], ".PNG", "{stem}.PNG")
    scan = scan_layout(tmp_path, "ddti")
    assert [(p.image.name, p.labels[0].name) for p in scan.pairs] == [("1.PNG", "1.PNG"), ("2.PNG", "2.PNG")]


@pytest.mark.parametrize("suffix", ["", "_mask", "_segmentation", "_seg", "_label", "_gt", "_MASK"])
@pytest.mark.parametrize("image_ext", [".png", ".JPG", ".jpeg", ".bmp", ".tif", ".tiff"])
def test_generic_pairing_rule(tmp_path, make_pairs, suffix, image_ext):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["case_1", "case_2"], image_ext, "{stem}" + suffix + ".png")
    scan = scan_layout(tmp_path, "generic")
    assert scan.problems == []
    assert [(p.image.name, p.labels[0].name) for p in scan.pairs] == [
        (f"case_{i}{image_ext}", f"case_{i}{suffix}.png") for i in (1, 2)
    ]


def test_generic_custom_suffix(tmp_path, make_pairs):
    make_pairs(tmp_path / "imgs", tmp_path / "labels", ["a", "b"], ".png", "{stem}_annot.png")
    default = scan_layout(tmp_path, "generic")
    assert default.pairs == []
    assert sorted((pr.kind, pr.path.name) for pr in default.problems) == [
        ("unpaired image", "a.png"),
        ("unpaired image", "b.png"),
        ("unpaired mask", "a_annot.png"),
        ("unpaired mask", "b_annot.png"),
    ]
    custom = scan_layout(tmp_path, "generic", mask_suffixes=["_annot"])
    assert [p.labels[0].name for p in custom.pairs] == ["a_annot.png", "b_annot.png"]


def test_duplicate_image_stems_are_reported(tmp_path, make_pairs, make_image):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["a", "b"])
    make_image(tmp_path / "images" / "a.jpg")
    scan = scan_layout(tmp_path, "generic")
    assert [p.image.name for p in scan.pairs] == ["b.png"]
    assert sorted((pr.kind, pr.path.name) for pr in scan.problems) == [
        ("duplicate name", "a.jpg"),
        ("duplicate name", "a.png"),
    ]


def test_missing_folders_and_unknown_layout(tmp_path, make_image):
    make_image(tmp_path / "pictures" / "a.png")
    with pytest.raises(FileNotFoundError, match="expected an image folder"):
        scan_layout(tmp_path, "kvasir")
    with pytest.raises(FileNotFoundError, match="trainval-image"):
        scan_layout(tmp_path, "tn3k")
    with pytest.raises(FileNotFoundError, match="cannot detect the layout"):
        scan_layout(tmp_path, "auto")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan_layout(tmp_path / "nope", "kvasir")
    with pytest.raises(ValueError, match="unknown layout 'kvasr'"):
        scan_layout(tmp_path, "kvasr")


@pytest.mark.parametrize("folder,layout,count,detected", FIXTURE_SETS)
def test_fixture_layouts(fixtures_dir, folder, layout, count, detected):
    root = fixtures_dir / folder
    scan = scan_layout(root, layout)
    assert scan.problems == []
    assert len(scan.pairs) == count
    assert len({p.image for p in scan.pairs}) == count
    for pair in scan.pairs:
        assert len(pair.labels) == 1
        assert _mask_stem(pair.labels[0]) == pair.image.stem
        assert pair.image.parent.name == "images" and pair.labels[0].parent.name == "masks"
    assert detect_layout(root) == detected
    assert [p.image for p in scan_layout(root, "generic").pairs] == [p.image for p in scan.pairs]


def test_unrelated_split_named_folder_is_ignored(tmp_path, make_pairs, make_image):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["a", "b"])
    make_image(tmp_path / "test" / "notes.png")  # a "test" folder without images/ and masks/
    scan = scan_layout(tmp_path, "kvasir")
    assert [(p.image.name, p.split) for p in scan.pairs] == [("a.png", None), ("b.png", None)]
