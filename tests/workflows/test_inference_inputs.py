"""`segdino infer` on folders as users have them: shared stems, junk and broken files, empty folders, reruns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from segdino_monai.cli import main
from segdino_monai.data.datalist_reading import list_images
from segdino_monai.networks import SegDINO
from segdino_monai.workflows import InferenceSummary
from tests.conftest import TINY_VIT

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"
TINY = ["--backbone-weights", "random", "--spatial-size", "64", "64"]
TINY += ["--set", f"network_def#backbone_kwargs={TINY_VIT}"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A folder with a ``model.pt``: a seeded random decoder of the tiny SegDINO (as training would save it)."""
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    net = SegDINO(backbone_kwargs=TINY_VIT)
    torch.save(net.state_dict(), folder / "model.pt")
    return folder


@pytest.fixture
def kvasir(fixtures_dir) -> list[Path]:
    return sorted((fixtures_dir / "endoscopy" / "kvasir_seg_256" / "images").iterdir())[:3]


def infer(images: Path, out: Path, ckpt_dir: Path, *extra: str) -> int:
    args = ["infer", *TINY, "--dataset-dir", str(images), "--output-dir", str(out), "--ckpt-dir", str(ckpt_dir)]
    return main([*args, *extra])


def messy_folder(folder: Path, kvasir: list[Path]) -> dict[str, str]:
    """Real images, two of them sharing the stem ``a`` (a JPEG and its PNG), broken files and macOS junk.

    Returns:
        The broken files: name -> what is wrong with them.
    """
    folder.mkdir()
    shutil.copy(kvasir[0], folder / "a.jpg")
    with Image.open(kvasir[1]) as image:
        image.save(folder / "a.png")  # another real image, stored as PNG, with the same stem as a.jpg
    shutil.copy(kvasir[2], folder / kvasir[2].name)
    data = kvasir[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(32))
    (folder / "._a.jpg").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (folder / "readme.txt").write_text("images from the endoscopy suite\n")
    return {"truncated.jpg": "truncated", "notes.png": "cannot be read as an image", "empty.jpg": "empty (0 bytes)"}


def test_list_images_ignores_junk_and_takes_extensions_in_any_case(fixtures_dir, tmp_path):
    ddti = sorted((fixtures_dir / "ultrasound" / "ddti" / "images").iterdir())[:2]  # upper-case .PNG
    for source in ddti:
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / f"._{ddti[0].name}").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.png").write_bytes(ddti[0].read_bytes())
    assert ddti[0].suffix == ".PNG"
    assert list_images(tmp_path) == [{"image": str(tmp_path / s.name)} for s in ddti]


def test_bad_files_are_skipped_and_reported_and_the_rest_is_segmented(model_dir, kvasir, tmp_path, capsys):
    folder, out = tmp_path / "images", tmp_path / "out"
    broken = messy_folder(folder, kvasir)
    good = ["a.jpg", "a.png", kvasir[2].name]

    assert infer(folder, out, model_dir) == 1
    log = capsys.readouterr()  # the bundle's logging.conf sends log records to stdout

    names = {"a.jpg": "a.jpg", "a.png": "a.png", kvasir[2].name: kvasir[2].stem}  # the documented naming rule
    expected = sorted(f"{names[g]}_{kind}.png" for g in good for kind in ("mask", "overlay")) + ["summary.json"]
    assert sorted(p.name for p in out.iterdir()) == expected  # nothing for the broken files, no temporary files
    for name in good:
        mask = np.asarray(Image.open(out / f"{names[name]}_mask.png"))
        with Image.open(folder / name) as image:
            assert mask.shape == (image.height, image.width)
        assert set(np.unique(mask)) <= {0, 255}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"images": 6, "segmented": 3, "skipped": 3}
    assert sorted(Path(item["file"]).name for item in summary["segmented"]) == sorted(good)
    reasons = {Path(item["file"]).name: item["reason"] for item in summary["skipped"]}
    assert set(reasons) == set(broken)  # junk (.DS_Store, ._a.jpg, readme.txt) is ignored, not reported
    lines = log.out.splitlines()
    for name, why in broken.items():
        assert why in reasons[name]
        line = next(line for line in lines if f"ERROR - Skipped {folder / name}: " in line)
        assert why in line  # one line: the file and the reason
    summary_line = next(line for line in lines if "3 of 6 images segmented" in line)
    assert "3 skipped: empty.jpg, notes.png, truncated.jpg" in summary_line
    assert "Traceback" not in log.out + log.err and "._a.jpg" not in log.out + log.err

    # the mask of a.png among the others is the mask of a.png segmented alone (named a_mask.png there)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(folder / "a.png", alone / "a.png")
    assert infer(alone, tmp_path / "out_alone", model_dir) == 0
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "a.png_mask.png")), np.asarray(Image.open(tmp_path / "out_alone" / "a_mask.png"))
    )
    single = json.loads((tmp_path / "out_alone" / "summary.json").read_text())
    assert single["counts"] == {"images": 1, "segmented": 1, "skipped": 0}

    # a rerun into the same folder, over the leftovers of a killed run, gives the same files with the same content
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "summary.json"}
    (out / "a.jpg_mask.png").write_bytes(before["a.jpg_mask.png"][:40])  # a half-written mask of an older version
    (out / "summary.json").write_text('{"counts": ')
    stale = out / ".a.png_mask.png.x1y2.tmp.png"  # what a SIGKILL during a write leaves (hidden)
    stale.write_bytes(b"\x89PNG")
    assert infer(folder, out, model_dir) == 1
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "summary.json" and p != stale}
    assert after.keys() == before.keys()
    for name in before:
        if name.endswith("_mask.png"):
            np.testing.assert_array_equal(np.asarray(Image.open(out / name)), _pixels(before[name]))
    assert json.loads((out / "summary.json").read_text())["counts"] == summary["counts"]


def _last_error(capsys) -> str:
    """The last ERROR line logged (the bundle's logging.conf sends log records to stdout)."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return [line for line in captured.out.splitlines() if " ERROR " in line or line.startswith("ERROR")][-1]


def _pixels(png: bytes) -> np.ndarray:
    import io

    return np.asarray(Image.open(io.BytesIO(png)))


def test_a_failure_inside_the_pipeline_skips_that_image(model_dir, kvasir, tmp_path, capsys):
    """Without the pre-check, a truncated JPEG fails in the loader: still one line, skipped, the rest written."""
    folder, out = tmp_path / "images", tmp_path / "out"
    folder.mkdir()
    shutil.copy(kvasir[0], folder / kvasir[0].name)
    data = kvasir[1].read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 3])
    assert infer(folder, out, model_dir, "--set", "dataset#check=False") == 1
    expected = f"Skipped {folder / 'cut.jpg'}: cannot be read as an image (image file is truncated"
    assert expected in capsys.readouterr().out
    assert (out / f"{kvasir[0].stem}_mask.png").is_file() and not list(out.glob("cut*"))
    skipped = json.loads((out / "summary.json").read_text())["skipped"]
    assert [Path(s["file"]).name for s in skipped] == ["cut.jpg"] and "truncated" in skipped[0]["reason"]


class _Engine:
    """A stand-in evaluator whose model step fails for the images named in ``failing``."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing

    def _iteration(self, engine, batch):
        if batch["image"].meta["filename_or_obj"][0] in self.failing:
            raise RuntimeError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return {"pred": batch["image"]}


def _batch(path: str) -> dict:
    image = MetaTensor(torch.zeros(1, 3, 8, 8), meta={"filename_or_obj": [path]})
    return {"image": image, "output_name": [Path(path).stem], "skipped_input": []}


def test_a_failing_model_step_skips_the_image_and_the_run_goes_on(tmp_path):
    summary = InferenceSummary(tmp_path)
    engine = _Engine({"/data/huge.png", "/data/huge2.png", "/data/huge3.png"})
    ok = _batch("/data/ok.png")
    assert summary(engine, ok)["pred"] is ok["image"]  # a good image goes through the evaluator's own step
    for name in ("huge", "huge2", "huge3"):  # after a success, failures are about their files
        assert summary(engine, _batch(f"/data/{name}.png")) == {}
    assert summary.skipped[0] == {"file": "/data/huge.png", "reason": "RuntimeError: CUDA out of memory. Tried to "
                                  "allocate 40.00 GiB"}  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        summary.finish()
    assert exit_info.value.code == 1
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["counts"] == {"images": 4, "segmented": 1, "skipped": 3}
    assert written["segmented"] == [{"file": "/data/ok.png", "output": "ok"}]


def test_a_model_step_failing_on_every_first_image_stops_the_run(tmp_path):
    """A failure on the first 3 images and no success: a configuration or device problem, not one file's."""
    summary = InferenceSummary(tmp_path)
    engine = _Engine({f"/data/{i}.png" for i in range(5)})
    assert summary(engine, _batch("/data/0.png")) == {} and summary(engine, _batch("/data/1.png")) == {}
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        summary(engine, _batch("/data/2.png"))


@pytest.mark.parametrize("content", [[], [".DS_Store", "._photo.jpg", "notes.txt"]], ids=["empty", "junk-only"])
def test_a_folder_without_images_is_exit_2_naming_it_and_the_extensions(model_dir, tmp_path, capsys, content):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in content:
        (folder / name).write_bytes(b"\x00\x05\x16\x07")
    assert infer(folder, tmp_path / "out", model_dir) == 2
    message = _last_error(capsys)
    assert f"No images to segment in {folder}" in message and ".png, .jpg, .jpeg" in message
    assert not (tmp_path / "out").exists()  # nothing created for a wrong input


def test_an_unwritable_output_folder_is_exit_2_before_any_model_work(kvasir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(kvasir[0], folder / kvasir[0].name)
    no_model = tmp_path / "no_model"  # the model would fail to load: the output folder is checked before
    (tmp_path / "a_file").write_text("x")
    targets = [tmp_path / "a_file" / "masks", folder]  # under a regular file (fails for root too); the input folder
    for target in targets:
        assert infer(folder, target, no_model) == 2
        message = _last_error(capsys)
        assert str(target) in message and "--output-dir" in message and "model.pt" not in message
    assert sorted(p.name for p in folder.iterdir()) == [kvasir[0].name]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 555 folder: tested with a path under a file")
def test_a_read_only_output_folder_is_exit_2(kvasir, tmp_path, capsys):
    folder, out = tmp_path / "images", tmp_path / "read_only"
    folder.mkdir()
    out.mkdir()
    shutil.copy(kvasir[0], folder / kvasir[0].name)
    out.chmod(0o555)
    try:
        assert infer(folder, out, tmp_path / "no_model") == 2
    finally:
        out.chmod(0o755)
    assert f"Cannot write to the output folder {out}" in _last_error(capsys)


def test_monai_bundle_run_also_exits_1_after_skipping(model_dir, kvasir, tmp_path):
    folder, out = tmp_path / "images", tmp_path / "out"
    folder.mkdir()
    shutil.copy(kvasir[0], folder / kvasir[0].name)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    command = [
        sys.executable, "-m", "monai.bundle", "run", "inference",
        "--config_file", str(BUNDLE / "configs" / "inference.json"),
        "--meta_file", str(BUNDLE / "configs" / "metadata.json"),
        "--bundle_root", str(BUNDLE), "--dataset_dir", str(folder), "--output_dir", str(out),
        "--ckpt_dir", str(model_dir), "--backbone_weights", "random", "--spatial_size", "[64, 64]",
        "--network_def#backbone_kwargs", json.dumps(TINY_VIT),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert f"Skipped {folder / 'broken.png'}" in result.stderr + result.stdout
    assert (out / f"{kvasir[0].stem}_mask.png").is_file()
    assert json.loads((out / "summary.json").read_text())["counts"]["skipped"] == 1
