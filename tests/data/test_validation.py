from __future__ import annotations

import pytest

from segdino_monai.data import DatasetError, check_image, prepare_datalist, scan_layout, validate_scan


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _broken_folder(tmp_path, make_pairs, make_image):
    """Six stems: a, b good; c image truncated (JPEG); d mask truncated (PNG); e mask of another size; plus one
    image without mask (lonely.png) and one mask without image (orphan.png)."""
    make_pairs(tmp_path / "images", tmp_path / "masks", ["a", "b", "c", "d", "e"], ".jpg", "{stem}.png")
    _truncate(tmp_path / "images" / "c.jpg")
    _truncate(tmp_path / "masks" / "d.png")
    make_image(tmp_path / "masks" / "e.png", size=(9, 6), mode="L")
    make_image(tmp_path / "images" / "lonely.png")
    make_image(tmp_path / "masks" / "orphan.png", mode="L")
    return tmp_path


def test_check_image(tmp_path, make_image):
    assert check_image(make_image(tmp_path / "a.png", size=(7, 5))) == (7, 5)
    assert check_image(make_image(tmp_path / "a.jpg", size=(40, 30))) == (40, 30)
    assert check_image(make_image(tmp_path / "a.tif", size=(3, 4), mode="L")) == (3, 4)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png: cannot be read"):
        check_image(tmp_path / "junk.png")
    for ext in (".png", ".jpg", ".tif", ".bmp"):
        path = make_image(tmp_path / f"big{ext}", size=(64, 64))
        _truncate(path, 0.8)
        with pytest.raises(ValueError, match=f"big\\{ext}: cannot be read"):
            check_image(path)


def test_report_names_every_bad_file(tmp_path, make_pairs, make_image):
    root = _broken_folder(tmp_path, make_pairs, make_image)
    report = validate_scan(scan_layout(root, "generic"))
    assert not report.ok
    assert report.num_pairs == 5
    assert sorted((p.kind, p.path.relative_to(root).as_posix()) for p in report.problems) == [
        ("size mismatch", "masks/e.png"),
        ("unpaired image", "images/lonely.png"),
        ("unpaired mask", "masks/orphan.png"),
        ("unreadable", "images/c.jpg"),
        ("unreadable", "masks/d.png"),
    ]
    assert sorted(p.name for p in report.bad_pairs) == ["c.jpg", "d.jpg", "e.jpg"]
    assert [p.image.name for p in report.good_pairs(scan_layout(root, "generic").pairs)] == ["a.jpg", "b.jpg"]
    mismatch = next(p for p in report.problems if p.kind == "size mismatch")
    assert "mask is 9x6 but image e.jpg is 8x6" in mismatch.detail
    summary = report.summary()
    for name in ("images/c.jpg", "masks/d.png", "masks/e.png", "images/lonely.png", "masks/orphan.png"):
        assert name in summary


def test_prepare_fails_and_writes_nothing(tmp_path, make_pairs, make_image):
    root = _broken_folder(tmp_path / "data", make_pairs, make_image)
    out = tmp_path / "out" / "datalist.json"
    with pytest.raises(DatasetError) as info:
        prepare_datalist(root, out, layout="generic")
    message = str(info.value)
    for name in ("c.jpg", "d.png", "e.png", "lonely.png", "orphan.png", "--skip-bad"):
        assert name in message
    assert info.value.report.num_pairs == 5
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_prepare_skip_bad(tmp_path, make_pairs, make_image, caplog):
    root = _broken_folder(tmp_path / "data", make_pairs, make_image)
    for stem in "fghij":  # enough good pairs for three splits
        make_image(root / "images" / f"{stem}.jpg")
        make_image(root / "masks" / f"{stem}.png", mode="L")
    out = tmp_path / "datalist.json"
    with caplog.at_level("WARNING"):
        datalist = prepare_datalist(root, out, layout="generic", skip_bad=True)
    assert "c.jpg" in caplog.text and "orphan.png" in caplog.text
    images = sorted(e["image"] for s in ("training", "validation", "test") for e in datalist[s])
    assert images == [f"data/images/{s}.jpg" for s in "abfghij"]
    assert datalist["summary"]["skipped"] == [
        "images/c.jpg",
        "images/lonely.png",
        "masks/d.png",
        "masks/e.png",
        "masks/orphan.png",
    ]
    assert out.exists()


@pytest.mark.parametrize(
    "folder,layout,count",
    [
        ("endoscopy/kvasir_seg_256", "kvasir", 300),
        ("endoscopy/cvc_endoscene_512", "cvc", 24),
        ("dermoscopy/ham10000", "isic", 36),
        ("dermoscopy/isic2017_val", "isic", 8),
        ("ultrasound/busi_rgbmask", "busi", 30),
        ("ultrasound/ddti", "ddti", 150),
    ],
)
def test_fixtures_validate_clean(fixtures_dir, folder, layout, count):
    report = validate_scan(scan_layout(fixtures_dir / folder, layout))
    assert report.problems == [], report.summary()
    assert report.num_pairs == count
