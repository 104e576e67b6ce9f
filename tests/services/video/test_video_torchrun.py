"""``segdino video`` under ``torchrun`` (gloo, CPU): the inputs are dealt out between 2 processes, each segmented once,
with the outputs, the one summary and the exit status of a single process."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

from segdino_monai.io.images import read_image
from tests.bundle.conftest import run_command
from tests.conftest import BUNDLE, TINY_OVERRIDES, import_or_skip
from tests.services.video.conftest import write_video

av = import_or_skip("av", "pip install -e '.[video]'", "segdino video not tested")

CINE = "us/pydicom__pydicom/examples_ybr_color.dcm"


def _command(inputs: Path, out: Path, checkpoint: Path) -> list[str]:
    options = [a for k, v in TINY_OVERRIDES.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return [sys.executable, "-m", "segdino_monai.cli", "video", str(inputs), "-o", str(out), "--bundle-root",
            str(BUNDLE), "--backbone-weights", "random", "--checkpoint", str(checkpoint), "--modality", "ultrasound",
            "--end", "4", "--masks", "png", "--no-progress", *options]  # fmt: skip


def _outputs(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in (".csv", ".png")
    }


def test_two_processes_segment_each_input_once_with_the_outputs_and_summary_of_one(
    dicom_dir, decoder_checkpoint, tmp_path
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    frames = [read_image(dicom_dir / CINE, k) for k in range(1, 9)]
    write_video(inputs / "a.mp4", frames[:4], "libx264")
    write_video(inputs / "b.mp4", frames[4:], "libx264")
    shutil.copy(dicom_dir / CINE, inputs / "c.dcm")  # a cine loop: the third input
    (inputs / "d.mov").write_bytes(b"\x00" * 100)  # not a video: failed, in the summary, exit 1
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    result = run_command(_command(inputs, single, decoder_checkpoint), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    command = _command(inputs, ddp, decoder_checkpoint)
    command[1:3] = ["-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", "-m", "segdino_monai.cli"]
    distributed = run_command(command, cwd=tmp_path)
    assert distributed.returncode == 1, distributed.stderr[-3000:]  # one exit status: every process's is 1

    assert _outputs(ddp) == _outputs(single)
    assert len(_outputs(single)) == 3 * (1 + 4)  # frames.csv and 4 masks per input
    summaries = [json.loads((d / "summary.json").read_text()) for d in (single, ddp)]
    for summary, out in zip(summaries, (single, ddp), strict=True):
        for entry in summary["segmented"] + summary["failed"]:
            entry["output"] = str(Path(entry["output"]).relative_to(out))
            entry.pop("reason", None)  # names the file: the same file, the same reason (checked below)
    assert summaries[1] == summaries[0]
    assert summaries[0]["counts"] == {"segmented": 3, "failed": 1}
    assert [Path(e["file"]).name for e in summaries[0]["segmented"]] == ["a.mp4", "b.mp4", "c.dcm"]
    # each input segmented by one process only: one "frames segmented" line per input in the processes' logs
    log = distributed.stdout + distributed.stderr  # the bundle's logging.conf logs to stdout
    segmented = [line for line in log.splitlines() if "frames segmented in" in line]
    assert sorted(Path(line.split(": ")[0].split()[-1]).name for line in segmented) == ["a.mp4", "b.mp4", "c.dcm"]
    assert log.count("d.mov: cannot open as a video") == 1
    assert log.count("segdino video: 3 segmented, 1 failed") == 1  # the summary, by process 0
