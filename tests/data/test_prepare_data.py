from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from monai.data import load_decathlon_datalist

from segdino_monai.cli import main
from segdino_monai.data import build_datalist, prepare_datalist, scan_layout, write_datalist

SPLITS = ("training", "validation", "test")


def _load_all(path: Path) -> dict[str, list[dict]]:
    return {s: load_decathlon_datalist(path, data_list_key=s) for s in SPLITS}


def test_cli_prepare_data_readable_by_monai(tmp_path, make_pairs):
    stems = [f"s{i:02d}" for i in range(10)]
    make_pairs(tmp_path / "ds" / "images", tmp_path / "ds" / "masks", stems, ".jpg", "{stem}_mask.png")
    out = tmp_path / "lists" / "nested" / "datalist.json"
    rc = main(["prepare-data", str(tmp_path / "ds"), "-o", str(out), "--layout", "generic", "--seed", "5"])
    assert rc == 0
    raw = json.loads(out.read_text())
    assert raw["training"][0]["image"].startswith("../../ds/images/")
    assert raw["summary"]["counts"] == {"training": 7, "validation": 1, "test": 2}
    assert raw["summary"]["layout"] == "generic" and raw["summary"]["seed"] == 5
    assert raw["summary"]["dataset_dir"] == "../../ds"
    loaded = _load_all(out)
    assert [len(loaded[s]) for s in SPLITS] == [7, 1, 2]
    for entry in (e for s in SPLITS for e in loaded[s]):
        image, label = Path(entry["image"]), Path(entry["label"])
        assert image.is_absolute() and image.is_file() and label.is_file()
        assert label.name == f"{image.stem}_mask.png"
    assert [p.name for p in out.parent.iterdir()] == ["datalist.json"]  # no temporary file left behind


def test_cli_fractions_and_seed(tmp_path, make_pairs):
    make_pairs(tmp_path / "images", tmp_path / "masks", [f"{i}" for i in range(20)])
    args = ["prepare-data", str(tmp_path), "--val-fraction", "0.2", "--test-fraction", "0.3"]
    assert main([*args, "-o", str(tmp_path / "a.json")]) == 0
    assert main([*args, "-o", str(tmp_path / "b.json")]) == 0
    assert main([*args, "-o", str(tmp_path / "c.json"), "--seed", "1"]) == 0
    a, b, c = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "abc")
    assert a == b
    assert a["summary"]["counts"] == {"training": 10, "validation": 4, "test": 6}
    assert a["summary"]["layout"] == "generic"  # detected by --layout auto
    assert a["test"] != c["test"]


def test_cli_bad_folder_exit_status(tmp_path, make_pairs, make_image, caplog):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["a", "b", "c", "d"])
    make_image(tmp_path / "images" / "lonely.png")
    out = tmp_path / "datalist.json"
    with caplog.at_level(logging.ERROR):
        assert main(["prepare-data", str(tmp_path), "-o", str(out)]) == 2
    assert "unpaired image: images/lonely.png" in caplog.text
    assert not out.exists()
    assert main(["prepare-data", str(tmp_path), "-o", str(out), "--skip-bad"]) == 0
    assert sum(len(v) for v in _load_all(out).values()) == 4
    assert main(["prepare-data", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert main(["prepare-data", str(tmp_path), "-o", str(out), "--val-fraction", "0"]) == 2


def test_busi_multi_mask_labels_are_lists(tmp_path, make_image):
    for cls in ("benign", "malignant", "normal"):
        for i in (1, 2):
            make_image(tmp_path / cls / f"{cls} ({i}).png")
            make_image(tmp_path / cls / f"{cls} ({i})_mask.png", mode="L")
    make_image(tmp_path / "benign" / "benign (1)_mask_1.png", mode="L")
    out = tmp_path / "datalist.json"
    datalist = prepare_datalist(tmp_path, out, layout="auto")
    assert datalist["summary"]["layout"] == "busi"
    assert sum(sum(g.values()) for g in datalist["summary"]["groups"].values()) == 6
    entries = {Path(e["image"]).name: e for s in SPLITS for e in _load_all(out)[s]}
    labels = entries["benign (1).png"]["label"]
    assert isinstance(labels, list) and [Path(p).name for p in labels] == [
        "benign (1)_mask.png",
        "benign (1)_mask_1.png",
    ]
    assert all(Path(p).is_file() for p in labels)
    assert isinstance(entries["malignant (2).png"]["label"], str)


def test_tn3k_official_test_split(tmp_path, make_pairs):
    make_pairs(
        tmp_path / "trainval-image", tmp_path / "trainval-mask", [f"{i:04d}" for i in range(16)], ".jpg", "{stem}.jpg"
    )
    make_pairs(tmp_path / "test-image", tmp_path / "test-mask", [f"{i:04d}" for i in range(5)], ".jpg", "{stem}.jpg")
    datalist = prepare_datalist(tmp_path, tmp_path / "dl.json", layout="tn3k")
    assert [e["image"].split("/")[0] for e in datalist["test"]] == ["test-image"] * 5
    assert {e["image"].split("/")[0] for e in datalist["validation"]} == {"trainval-image"}
    assert (len(datalist["training"]), len(datalist["validation"])) == (14, 2)
    assert datalist["summary"]["official_splits"] == ["test", "training"]


def test_write_datalist_is_atomic(tmp_path):
    path = tmp_path / "dl.json"
    write_datalist({"training": []}, path)
    with pytest.raises(TypeError):
        write_datalist({"training": [object()]}, path)
    assert json.loads(path.read_text()) == {"training": []}  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["dl.json"]


@pytest.mark.parametrize(
    "folder,layout,counts",
    [
        ("endoscopy/kvasir_seg_256", "kvasir", [210, 30, 60]),
        ("endoscopy/cvc_endoscene_512", "cvc", [17, 2, 5]),
        ("dermoscopy/ham10000", "isic", [25, 4, 7]),
        ("dermoscopy/isic2017_val", "isic", [5, 1, 2]),
        ("ultrasound/busi_rgbmask", "busi", [21, 3, 6]),
        ("ultrasound/ddti", "ddti", [105, 15, 30]),
    ],
)
def test_cli_on_fixtures(fixtures_dir, tmp_path, folder, layout, counts):
    out = tmp_path / "datalist.json"
    assert main(["prepare-data", str(fixtures_dir / folder), "--layout", layout, "-o", str(out)]) == 0
    loaded = _load_all(out)
    assert [len(loaded[s]) for s in SPLITS] == counts
    images = [e["image"] for s in SPLITS for e in loaded[s]]
    assert len(set(images)) == sum(counts)
    for entry in (e for s in SPLITS for e in loaded[s]):
        assert Path(entry["image"]).is_file() and Path(entry["label"]).is_file()
        assert Path(entry["label"]).stem.removesuffix("_segmentation") == Path(entry["image"]).stem
    again = tmp_path / "again.json"
    assert main(["prepare-data", str(fixtures_dir / folder), "--layout", layout, "-o", str(again)]) == 0
    assert again.read_text() == out.read_text()


def test_build_datalist_relative_paths(tmp_path, make_pairs):
    make_pairs(tmp_path / "images", tmp_path / "masks", ["a"])
    pair = scan_layout(tmp_path, "generic").pairs[0]
    datalist = build_datalist({"training": [pair]}, tmp_path / "sub")
    assert datalist == {
        "training": [{"image": "../images/a.png", "label": "../masks/a.png"}],
        "validation": [],
        "test": [],
    }


def test_cli_output_that_cannot_be_written_is_named(tmp_path, make_pairs, caplog):
    make_pairs(tmp_path / "ds" / "images", tmp_path / "ds" / "masks", ["a", "b", "c", "d"])
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("not a folder")
    nested = tmp_path / "file" / "sub" / "datalist.json"
    cases = {
        tmp_path / "folder": f"-o {tmp_path / 'folder'} is a folder: name the file to write",
        nested: f"-o {nested}: {tmp_path / 'file'} is a file, not a folder",
    }
    for output, message in cases.items():
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert main(["prepare-data", str(tmp_path / "ds"), "-o", str(output)]) == 2
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR][0].startswith(message)
    assert list((tmp_path / "folder").iterdir()) == []
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_read_only_output_folder_is_named(tmp_path, make_pairs, caplog):
    make_pairs(tmp_path / "ds" / "images", tmp_path / "ds" / "masks", ["a", "b", "c", "d"])
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with caplog.at_level(logging.ERROR):
            assert main(["prepare-data", str(tmp_path / "ds"), "-o", str(locked / "datalist.json")]) == 2
        assert f"the folder {locked} is not writable" in caplog.text
    finally:
        locked.chmod(0o755)


KILLED_WRITE = """
import os, signal, sys
from pathlib import Path
from segdino_monai.data import prepare_datalist

real_write = Path.write_text


def dying_write(self, data, *args, **kwargs):  # half of the new datalist is on disk: die before it moves into place
    real_write(self, data[: len(data) // 2], *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)


Path.write_text = dying_write
prepare_datalist(sys.argv[1], sys.argv[2], layout="generic", seed=1)
"""


def test_prepare_data_killed_while_writing_keeps_the_old_datalist_and_reruns(tmp_path, make_pairs):
    make_pairs(tmp_path / "ds" / "images", tmp_path / "ds" / "masks", [f"s{i}" for i in range(10)])
    out = tmp_path / "lists" / "datalist.json"
    assert main(["prepare-data", str(tmp_path / "ds"), "-o", str(out)]) == 0
    old = out.read_bytes()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-c", KILLED_WRITE, str(tmp_path / "ds"), str(out)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert out.read_bytes() == old  # the complete old datalist, not half of the new one
    assert len([p for p in out.parent.iterdir() if p.name.startswith(".datalist.json.")]) == 1  # the killed write's
    # a failing run (a bad folder) leaves it too
    (tmp_path / "ds" / "images" / "lonely.png").write_bytes(b"")
    assert main(["prepare-data", str(tmp_path / "ds"), "-o", str(out), "--seed", "1"]) == 2
    assert out.read_bytes() == old
    (tmp_path / "ds" / "images" / "lonely.png").unlink()
    assert main(["prepare-data", str(tmp_path / "ds"), "-o", str(out), "--seed", "1"]) == 0
    assert json.loads(out.read_text())["summary"]["seed"] == 1
    assert [p.name for p in out.parent.iterdir()] == ["datalist.json"]  # the leftover is gone
