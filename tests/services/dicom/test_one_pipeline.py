"""``segdino dicom`` and ``monai.bundle run inference`` run one pipeline: the same DICOM file gives the same mask, and
an override of one step from the command line changes both the same way. Real commands, as a user types them."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from tests.bundle.conftest import BUNDLE, INFERENCE, run_command
from tests.conftest import TINY_OVERRIDES

# a single-frame ultrasound image with one 2D region of the Sequence of Ultrasound Regions
SOURCE = "us/pydicom__pydicom-data/JPGLosslessP14SV1_1s_1f_8b.dcm"


def _dicom_command(inputs: Path, out: Path, checkpoint: Path, sets: dict) -> list[str]:
    options = [a for k, v in {**TINY_OVERRIDES, **sets}.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return [sys.executable, "-m", "segdino_monai.cli", "dicom", str(inputs), "-o", str(out), "--bundle-root",
            str(BUNDLE), "--backbone-weights", "random", "--checkpoint", str(checkpoint), "--modality", "ultrasound",
            "--no-progress", *options]  # fmt: skip


def _bundle_command(inputs: Path, out: Path, checkpoint: Path, sets: dict) -> list[str]:
    configs = json.dumps([INFERENCE, str(BUNDLE / "configs" / "ultrasound.json")])
    settings = {**TINY_OVERRIDES, "bundle_root": str(BUNDLE), "dataset_dir": str(inputs), "output_dir": str(out),
                "backbone_weights": "random",
                "ckpt_dir": str(checkpoint.parent), "num_workers": 0, **sets}  # fmt: skip
    options = [f"--{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in settings.items()]
    return [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", configs, *options]


def _both(inputs: Path, work: Path, checkpoint: Path, sets: dict) -> tuple[np.ndarray, np.ndarray]:
    """The mask of the one file in ``inputs`` by ``segdino dicom`` and by ``monai.bundle run inference``."""
    dicom_out, bundle_out = work / "dicom", work / "bundle"
    work.mkdir()
    for command in (
        _dicom_command(inputs, dicom_out, checkpoint, sets),
        _bundle_command(inputs, bundle_out, checkpoint, sets),
    ):
        result = run_command(command, cwd=work)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    uid = pydicom.dcmread(next(inputs.iterdir()), stop_before_pixels=True).SOPInstanceUID
    by_dicom = np.asarray(Image.open(dicom_out / uid / "mask.png")) > 0
    by_bundle = np.asarray(Image.open(bundle_out / "image_mask.png")) > 0
    return by_dicom, by_bundle


def test_segdino_dicom_and_bundle_inference_give_the_same_mask(dicom_dir, decoder_checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(dicom_dir / SOURCE, inputs / "image.dcm")
    ds = pydicom.dcmread(inputs / "image.dcm", stop_before_pixels=True)
    region = ds.SequenceOfUltrasoundRegions[0]
    rows = slice(int(region.RegionLocationMinY0), int(region.RegionLocationMaxY1) + 1)
    cols = slice(int(region.RegionLocationMinX0), int(region.RegionLocationMaxX1) + 1)
    outside = np.ones((int(ds.Rows), int(ds.Columns)), bool)
    outside[rows, cols] = False
    assert outside.any()  # the region leaves a border: what the crop does shows there

    default = _both(inputs, tmp_path / "default", decoder_checkpoint, {})
    assert np.array_equal(*default)  # one pipeline: pixel for pixel
    assert default[0].shape == (int(ds.Rows), int(ds.Columns)) and 0 < default[0].sum() < default[0].size
    assert not default[0][outside].any()  # cropped to the region, inverted: nothing outside it

    # one step changed from the command line, on both paths: the region crop off, the probability threshold lower
    changed = _both(inputs, tmp_path / "changed", decoder_checkpoint, {"cleanup#0#_disabled_": True, "threshold": 0.3})
    assert np.array_equal(*changed)
    assert not np.array_equal(changed[0], default[0])
    assert changed[0][outside].any()  # the whole frame was segmented


def test_segdino_dicom_under_torchrun_segments_each_file_once_with_one_summary(dicom_dir, decoder_checkpoint, tmp_path):
    """2 processes (gloo) on the ultrasound fixtures: the outputs and the summary of one process, each file once."""
    import hashlib

    inputs = dicom_dir / "us"
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    result = run_command(_dicom_command(inputs, single, decoder_checkpoint, {}), cwd=tmp_path)
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: a fixture is not segmentable, as designed
    command = _dicom_command(inputs, ddp, decoder_checkpoint, {})
    command[1:3] = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "segdino_monai.cli"]
    distributed = run_command(command, cwd=tmp_path)
    assert distributed.returncode == result.returncode, distributed.stderr[-3000:]

    def outputs(folder: Path) -> dict[str, str]:
        return {str(p.relative_to(folder)): hashlib.sha256(np.asarray(Image.open(p)).tobytes()).hexdigest()
                for p in folder.rglob("*mask.png")}  # fmt: skip

    assert outputs(ddp) == outputs(single) and len(outputs(single)) > 10
    summaries = [json.loads((d / "summary.json").read_text()) for d in (single, ddp)]
    assert summaries[1]["counts"] == summaries[0]["counts"]
    for kind in ("processed", "fallback", "skipped"):
        assert sorted(e["file"] for e in summaries[1][kind]) == sorted(e["file"] for e in summaries[0][kind])
    assert not list(ddp.glob("summary-rank*.json")) and not list(ddp.glob(".partial-*"))
