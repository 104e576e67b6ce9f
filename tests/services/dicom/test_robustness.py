"""`segdino dicom` on the inputs and sequences of real use: bad runs refused up front, bad files reported and
skipped, files without UIDs, DICOMDIRs with missing files, frame selections, and runs killed half-way then rerun."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from segdino_monai.cli import build_parser, main
from segdino_monai.io.dicom_reader import DicomReadError, read_dicom
from segdino_monai.services.dicom_batch import run_dicom
from segdino_monai.services.dicom_inputs import check_frames
from segdino_monai.services.predictor import BundlePredictor
from tests.conftest import BUNDLE, TINY_OVERRIDES

SINGLE = "us/pydicom__pydicom/examples_palette.dcm"  # 350 x 800, one frame, palette colour
RGB = "us/pydicom__pydicom/examples_rgb_color.dcm"  # 240 x 320 RGB, native: quick to read
CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"  # 30 frames


def _cli(out: Path, checkpoint: Path | str, *inputs: Path, modality: str = "ultrasound") -> list[str]:
    sets = [f"{k}={json.dumps(v)}" for k, v in TINY_OVERRIDES.items()]
    return ["dicom", *map(str, inputs), "-o", str(out), "--bundle-root", str(BUNDLE), "--backbone-weights",
            "random", "--checkpoint", str(checkpoint), "--modality", modality, "--no-progress",
            *[a for s in sets for a in ("--set", s)]]  # fmt: skip


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def _copy_with(source: Path, target: Path, **changes) -> Path:
    """Save a copy of a DICOM file with attributes changed (``None``: deleted)."""
    ds = pydicom.dcmread(source)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an invalid UID on purpose
        ds.save_as(target)
    return target


def _instances(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def test_bad_runs_stop_before_any_work(dicom_dir, tmp_path, caplog, capsys):
    """Each bad run: exit 2, one line naming the input/option, no model loaded, nothing written, inputs unchanged."""
    inputs = tmp_path / "in"
    _copy_with(dicom_dir / SINGLE, inputs / "a.dcm")
    empty = tmp_path / "empty"
    empty.mkdir()
    sidecars = tmp_path / "sidecars"
    sidecars.mkdir()
    (sidecars / "notes.txt").write_text("notes\n")
    (sidecars / ".hidden.dcm").write_bytes((dicom_dir / SINGLE).read_bytes())
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(photos / "a.png")
    (photos / "b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x\n")
    bad_dicomdir = tmp_path / "media" / "DICOMDIR"
    bad_dicomdir.parent.mkdir()
    bad_dicomdir.write_text("not a DICOMDIR\n")
    before = _hashes(tmp_path)
    # a checkpoint that does not exist: reaching the model would fail with another message
    missing_ckpt = tmp_path / "no-such-model.pt"
    cases = [
        (_cli(tmp_path / "o1", missing_ckpt, empty), f"No files to segment in input folder {empty}"),
        (_cli(tmp_path / "o2", missing_ckpt, sidecars), f"No files to segment in input folder {sidecars}"),
        (_cli(tmp_path / "o3", missing_ckpt, tmp_path / "nope"), f"Input not found: {tmp_path / 'nope'}"),
        (_cli(tmp_path / "o3", missing_ckpt, photos), f"No DICOM (or NIfTI/MHA/NRRD) file in input folder {photos}"),
        (_cli(inputs, missing_ckpt, inputs), f"-o {inputs} is inside the input folder {inputs}"),
        (_cli(inputs / "out", missing_ckpt, inputs), f"-o {inputs / 'out'} is inside the input folder"),
        (_cli(a_file, missing_ckpt, inputs), f"-o {a_file} is an existing file"),
        (_cli(a_file / "sub", missing_ckpt, inputs), f"{a_file} is a file, so the folder cannot be created"),
        (_cli(tmp_path / "o4", missing_ckpt, bad_dicomdir), f"{bad_dicomdir}: cannot read DICOMDIR"),
        ([*_cli(tmp_path / "o5", missing_ckpt, inputs), "--task", "kidney"], "--task kidney: unknown task"),
    ]
    for argv, message in cases:
        caplog.clear()
        assert main(argv) == 2, message
        text = caplog.text + capsys.readouterr().err
        assert message in text, (message, text)
        assert "Traceback" not in text and "no-such-model" not in text
    for bad in ("0", "-2", "abc", "5-3"):  # frame numbers start at 1: refused by the parser, exit 2
        with pytest.raises(SystemExit) as stop:
            main([*_cli(tmp_path / "o6", missing_ckpt, inputs), "--frames", bad])
        assert stop.value.code == 2
        assert f"argument --frames: {bad!r}: frame numbers start at 1" in capsys.readouterr().err
    assert _hashes(tmp_path) == before  # inputs untouched, no output written anywhere
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 7))


def test_frames_as_people_type_them():
    args = build_parser().parse_args(["dicom", "in", "-o", "out", "--frames", "1,15,30", "3-5", "3"])
    assert check_frames([n for group in args.frames for n in group]) == [1, 3, 4, 5, 15, 30]
    with pytest.raises(ValueError, match="--frames 0 2: frame numbers start at 1"):
        check_frames([0, 2])


def test_frames_outside_a_file_skip_that_file_only(dicom_dir, segmenter_factory, tmp_path):
    segmenter = segmenter_factory("ultrasound")
    cine, single = dicom_dir / CINE, dicom_dir / SINGLE
    summary = run_dicom([cine, single], tmp_path / "out", segmenter, frames=[2, 999], progress=False)
    assert not summary.ok and len(summary.skipped) == 1 and len(summary.processed) == 1
    assert summary.skipped[0]["file"] == str(cine)
    assert summary.skipped[0]["reason"] == "frame numbers [999] outside 1..30: the file has 30 frames"
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["skipped"] == summary.skipped
    # the single-frame image is segmented whole: --frames applies to multi-frame files
    uid = pydicom.dcmread(single, stop_before_pixels=True).SOPInstanceUID
    mask = np.asarray(Image.open(tmp_path / "out" / uid / "mask.png"))
    assert np.array_equal(mask > 0, segmenter(single) > 0)
    assert not (tmp_path / "out" / pydicom.dcmread(cine, stop_before_pixels=True).SOPInstanceUID).exists()


def test_pixel_data_shorter_than_its_attributes_is_a_bad_file(dicom_dir, segmenter_factory, tmp_path):
    inputs = tmp_path / "in"
    good = _copy_with(dicom_dir / RGB, inputs / "good.dcm")
    shorts = {}
    for name, relative in (("short_rgb", RGB), ("short_us", "us/pydicom__pydicom-data/OBXXXX1A.dcm")):
        ds = pydicom.dcmread(dicom_dir / relative)
        expected = ds.Rows * ds.Columns * ds.SamplesPerPixel * int(ds.get("NumberOfFrames", 1) or 1)
        expected *= ds.BitsAllocated // 8
        assert len(ds.PixelData) == expected  # the fixture is complete
        keep = expected - 2 * ds.Columns  # two bytes per column short: the last rows are missing
        shorts[name] = (_copy_with(dicom_dir / relative, inputs / f"{name}.dcm", PixelData=ds.PixelData[:keep],
                                   SOPInstanceUID=pydicom.uid.generate_uid()), keep, expected)  # fmt: skip
    for path, keep, expected in shorts.values():
        with pytest.raises(DicomReadError, match=f"{path.name}: pixel data is {keep} bytes .* needs {expected}"):
            read_dicom(path)
    summary = run_dicom([inputs], tmp_path / "out", segmenter_factory("ultrasound"), progress=False)
    assert [Path(e["file"]).name for e in summary.processed] == [good.name]
    assert sorted(Path(s["file"]).name for s in summary.skipped) == ["short_rgb.dcm", "short_us.dcm"]
    for item in summary.skipped:
        assert "the file is truncated or damaged" in item["reason"]
    assert len(_instances(tmp_path / "out")) == 1  # nothing written for the short files


def test_dicomdir_with_a_missing_file(dicom_dir, decoder_checkpoint, tmp_path):
    from pydicom.fileset import FileSet

    media = FileSet()
    for relative in (SINGLE, RGB, "vl/ivmartel__dwv/nema-vl2_j2kr.dcm"):
        ds = pydicom.dcmread(dicom_dir / relative)
        ds.PatientID = ds.get("PatientID") or "ANON"  # a DICOMDIR patient record needs one
        ds.StudyID = ds.get("StudyID") or "1"
        media.add(ds)
    media.write(tmp_path / "media")
    dicomdir = tmp_path / "media" / "DICOMDIR"
    files = sorted(p for p in (tmp_path / "media").rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert len(files) == 3
    files[1].unlink()
    out = tmp_path / "out"
    assert main(_cli(out, decoder_checkpoint, dicomdir)) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["processed"] == 2 and summary["counts"]["skipped"] == 1
    assert summary["skipped"][0] == {"file": str(files[1]), "reason": f"file not found (referenced by {dicomdir})"}
    assert sorted(Path(e["file"]) for e in summary["processed"]) == [files[0], files[2]]


def test_sources_without_uids_get_everything_but_the_seg(dicom_dir, segmenter_factory, tmp_path):
    source = dicom_dir / SINGLE
    inputs = tmp_path / "in"
    no_study = _copy_with(source, inputs / "no_study.dcm", StudyInstanceUID=None)
    no_uid_a = _copy_with(source, inputs / "a" / "IM0001.dcm", SOPInstanceUID=None)
    no_uid_b = _copy_with(source, inputs / "b" / "IM0001.dcm", SOPInstanceUID=None)
    evil = _copy_with(source, inputs / "c" / "evil.dcm", SOPInstanceUID="../../escape")
    segmenter = segmenter_factory("ultrasound")
    out = tmp_path / "out"
    summary = run_dicom([inputs], out, segmenter, progress=False)
    assert summary.ok and not summary.processed and len(summary.fallback) == 4
    reasons = {Path(e["file"]).relative_to(inputs).as_posix(): e["reason"] for e in summary.fallback}
    assert reasons["no_study.dcm"].startswith("the source has no StudyInstanceUID")
    assert reasons["a/IM0001.dcm"].startswith("the source has no SOPInstanceUID")
    assert reasons["c/evil.dcm"] == "the source's SOPInstanceUID '../../escape' is not a valid UID"
    folders = {Path(e["file"]).relative_to(inputs).as_posix(): Path(e["output"]).name for e in summary.fallback}
    sop_uid = pydicom.dcmread(source, stop_before_pixels=True).SOPInstanceUID
    # named by SOPInstanceUID; else by file name, made unique; a UID that is not a plain UID never names a folder
    assert folders == {"no_study.dcm": sop_uid, "a/IM0001.dcm": "IM0001", "b/IM0001.dcm": "IM0001-2",
                       "c/evil.dcm": "evil"}  # fmt: skip
    assert not (tmp_path / "escape").exists() and sorted(p.name for p in _instances(out)) == sorted(folders.values())
    expected = segmenter(source)
    for path in (no_study, no_uid_a, no_uid_b, evil):
        folder = out / folders[path.relative_to(inputs).as_posix()]
        report = json.loads((folder / "report.json").read_text())
        assert report["source_file"] == str(path.resolve()) and "seg" not in report["outputs"]
        assert report["seg_not_written"] == reasons[path.relative_to(inputs).as_posix()]
        assert not (folder / "seg.dcm").exists()
        assert np.array_equal(np.asarray(Image.open(folder / "mask.png")) > 0, expected > 0)
        assert (folder / "overlay.png").is_file() and (folder / "mask.nii.gz").is_file()
    assert json.loads((out / folders["a/IM0001.dcm"] / "report.json").read_text())["SOPInstanceUID"] is None
    # a rerun finds every one of them done, under the same names
    again = run_dicom([inputs], out, segmenter, progress=False)
    assert len(again.done) == 4 and {Path(e["file"]): Path(e["output"]).name for e in again.done} == {
        Path(e["file"]): Path(e["output"]).name for e in summary.fallback
    }


def _copies(dicom_dir: Path, folder: Path, count: int) -> list[Path]:
    return [
        _copy_with(dicom_dir / RGB, folder / f"img{k}.dcm", SOPInstanceUID=pydicom.uid.generate_uid())
        for k in range(count)
    ]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_run_is_cleaned_up_and_finished_by_a_rerun(dicom_dir, decoder_checkpoint, tmp_path, sig):
    inputs = tmp_path / "in"
    sources = _copies(dicom_dir, inputs, 6)
    before = _hashes(inputs)
    out = tmp_path / "out"
    log = tmp_path / "log.txt"
    command = [sys.executable, "-m", "segdino_monai.cli", *_cli(out, decoder_checkpoint, inputs)]
    with log.open("w") as sink:
        # a shell may start background jobs with SIGINT ignored; a user's terminal does not
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 240
        while not (out.is_dir() and any((p / "report.json").is_file() for p in _instances(out))):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.05)
        process.send_signal(sig)
        code = process.wait(timeout=120)
    text = log.read_text()
    done_before = [p for p in _instances(out) if (p / "report.json").is_file()]
    assert 1 <= len(done_before) < len(sources), "the run was not interrupted half-way"
    if sig == signal.SIGINT:
        assert code == 130, text[-3000:]
        assert "segdino dicom interrupted (Ctrl-C)" in text and "Traceback" not in text
        assert _hidden(out) == []  # its own staging folder removed
        summary = json.loads((out / "summary.json").read_text())
        assert summary["interrupted"] == "interrupted (Ctrl-C)"
        # (an instance published just before the interrupt may miss from the summary: the rerun counts it done)
        assert summary["counts"]["processed"] in (len(done_before) - 1, len(done_before))
    else:
        assert code == -signal.SIGKILL
        # what a kill can leave: the staging folder of the instance being written (its pid in the name)
        leftovers = _hidden(out)
        assert all(
            n.startswith((f".partial-{process.pid}-", f".old-{process.pid}-", ".summary.json.")) for n in leftovers
        )
    # leftovers of dead runs (as SIGKILL or a power cut leave them), and the staging folder of a live run
    dead = _dead_pid()
    (out / f".partial-{dead}-1.2.3-abcd").mkdir()
    (out / f".partial-{dead}-1.2.3-abcd" / "mask.png").write_bytes(b"half")
    (out / f".old-{dead}-1.2.4-123").mkdir()
    (out / ".summary.json.x1.tmp.json").write_text("{")
    other_run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    live = out / f".partial-{other_run.pid}-9.9-live"
    live.mkdir()
    # an instance folder without its report (an older version's crash): redone, not taken as done
    uid = pydicom.dcmread(sources[-1], stop_before_pixels=True).SOPInstanceUID
    (out / uid).mkdir(exist_ok=True)
    (out / uid / "stale.txt").write_text("x")
    try:
        assert main(_cli(out, decoder_checkpoint, inputs)) == 0
    finally:
        other_run.kill()
        other_run.wait()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["done"] == len(done_before)
    assert summary["counts"]["processed"] == len(sources) - len(done_before)
    assert "interrupted" not in summary
    uids = sorted(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in sources)
    assert [p.name for p in _instances(out)] == uids
    for folder in _instances(out):
        assert sorted(p.name for p in folder.iterdir()) == [
            "mask.nii.gz", "mask.png", "overlay.png", "report.json", "seg.dcm"
        ]  # fmt: skip
    assert _hidden(out) == [live.name]  # the live run's folder is left alone
    assert _hashes(inputs) == before


def test_sigterm_is_handled_like_ctrl_c(dicom_dir, decoder_checkpoint, tmp_path, monkeypatch, caplog, capsys):
    inputs = tmp_path / "in"
    sources = _copies(dicom_dir, inputs, 3)
    out = tmp_path / "out"
    calls = []
    original = BundlePredictor.segment

    def segment_then_terminated(self, path, frame=None):
        calls.append(1)
        if len(calls) == 2:  # SIGTERM while the second instance is being segmented
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, path, frame)

    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(BundlePredictor, "segment", segment_then_terminated)
    assert main(_cli(out, decoder_checkpoint, inputs)) == 143
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err  # the bundle's logging.conf logs to stdout
    assert "segdino dicom terminated (SIGTERM)" in text and "Traceback" not in text
    assert signal.getsignal(signal.SIGTERM) == handler  # restored
    assert len(_instances(out)) == 1 and _hidden(out) == []
    assert json.loads((out / "summary.json").read_text())["interrupted"] == "terminated (SIGTERM)"
    monkeypatch.setattr(BundlePredictor, "segment", original)
    assert main(_cli(out, decoder_checkpoint, inputs)) == 0
    assert len(_instances(out)) == len(sources) and _hidden(out) == []
