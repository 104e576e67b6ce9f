"""multi_gpu_evaluate.json and multi_gpu_inference.json under torchrun (2 processes, gloo on the CPU): every image is
evaluated and written exactly once, and the outputs equal those of one process on the same data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bundle.conftest import CONFIGS, EVALUATE, INFERENCE, TRAIN, command_env, tiny_overrides, workflow


def _torchrun(run_id: str, configs: list[str], overrides: dict, cwd: Path) -> subprocess.CompletedProcess:
    args = [f"--{k}={v if isinstance(v, (str, bool)) else json.dumps(v)}" for k, v in overrides.items()]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "monai.bundle", "run", run_id, "--config_file", json.dumps(configs),
        "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"), *args,
    ]  # fmt: skip
    return subprocess.run(command, cwd=cwd, env=command_env(), capture_output=True, text=True, timeout=300)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as f:
        return {row.pop("filename"): row for row in csv.DictReader(f)}


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_mask.png"))}


@pytest.fixture(scope="module")
def kvasir(fixtures_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A bundle trained 1 epoch on Kvasir images (tiny backbone); its work folder and a datalist of 5 test images."""
    work = tmp_path_factory.mktemp("kvasir")
    folder = fixtures_dir / "endoscopy" / "kvasir_seg_256"
    pairs = [{"image": str(p), "label": str(folder / "masks" / p.name)} for p in sorted((folder / "images").iterdir())]
    datalist = work / "datalist.json"
    datalist.write_text(json.dumps({"training": pairs[:4], "validation": pairs[4:5], "test": pairs[5:10]}))
    flow = workflow(TRAIN, "train", **tiny_overrides(work, datalist=str(datalist), **{"train#trainer#max_epochs": 1}))
    flow.run()
    flow.finalize()
    return work, datalist


def test_evaluation_on_two_processes_scores_each_image_once_as_one_process_does(kvasir, tmp_path):
    work, datalist = kvasir
    common = tiny_overrides(work, datalist=str(datalist), save_predictions=True)
    single = workflow(EVALUATE, "eval", **{**common, "output_dir": str(tmp_path / "single")})
    single.run()
    single.finalize()
    result = _torchrun(
        "evaluating",
        [*EVALUATE, str(CONFIGS / "multi_gpu_evaluate.json")],
        {**common, "output_dir": str(tmp_path / "ddp")},
        tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "repeated image" not in result.stdout + result.stderr  # each process scored its own share

    expected, got = (
        _rows(tmp_path / "single" / "metrics_per_image.csv"),
        _rows(tmp_path / "ddp" / "metrics_per_image.csv"),
    )
    assert len(expected) == 5 and sorted(got) == sorted(expected)  # 5 images on 2 processes: each once
    for name, row in expected.items():
        for metric, value in row.items():
            assert float(got[name][metric]) == pytest.approx(float(value), abs=1e-6, nan_ok=True), (name, metric)
    summaries = [json.loads((tmp_path / d / "metrics_summary.json").read_text()) for d in ("single", "ddp")]
    assert summaries[1]["num_images"] == 5
    assert summaries[1]["metrics"]["test_mean_dice"]["mean"] == pytest.approx(
        summaries[0]["metrics"]["test_mean_dice"]["mean"]
    )
    masks = [_masks(tmp_path / d / "predictions") for d in ("single", "ddp")]
    assert sorted(masks[1]) == sorted(masks[0]) and len(masks[0]) == 5
    assert all(np.array_equal(masks[0][k], masks[1][k]) for k in masks[0])
    assert (tmp_path / "ddp" / "report.html").is_file()


def test_inference_on_two_processes_writes_each_output_once_and_one_summary(kvasir, fixtures_dir, tmp_path):
    work, _ = kvasir
    images = tmp_path / "images"
    images.mkdir()
    for source in sorted((fixtures_dir / "endoscopy" / "kvasir_seg_256" / "images").iterdir())[10:14]:
        (images / source.name).symlink_to(source)
    (images / "broken.png").write_text("not an image")  # skipped and reported, whichever process gets it
    common = {**tiny_overrides(work), "dataset_dir": str(images)}
    single = workflow(INFERENCE, "infer", **{**common, "output_dir": str(tmp_path / "single")})
    with pytest.raises(SystemExit):  # ImagesSkipped: the broken file
        single.run()
    result = _torchrun(
        "inference",
        [INFERENCE, str(CONFIGS / "multi_gpu_inference.json")],
        {**common, "output_dir": str(tmp_path / "ddp")},
        tmp_path,
    )
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]  # as one process: 1, some skipped
    assert "more than one process" not in result.stdout + result.stderr  # each process segmented its own share

    masks = [_masks(tmp_path / d) for d in ("single", "ddp")]
    assert len(masks[0]) == 4 and sorted(masks[1]) == sorted(masks[0])
    assert all(np.array_equal(masks[0][k], masks[1][k]) for k in masks[0])
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["counts"] == {"images": 5, "segmented": 4, "skipped": 1}
    assert [Path(s["file"]).name for s in summary["skipped"]] == ["broken.png"]
    assert sorted(Path(s["file"]).name for s in summary["segmented"]) == sorted(
        p.name for p in images.iterdir() if p.name != "broken.png"
    )


def test_feature_cache_under_ddp_builds_each_view_once_and_trains_as_one_process(fixtures_dir, tmp_path):
    """2 processes x batch 2 from the cache give the model of 1 process x batch 4 (one SGD step: float tolerance)."""
    import torch

    folder = fixtures_dir / "endoscopy" / "kvasir_seg_256"
    pairs = [{"image": str(p), "label": str(folder / "masks" / p.name)} for p in sorted((folder / "images").iterdir())]
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": pairs[:4], "validation": pairs[4:6]}))
    common = {
        "datalist": str(datalist),
        "feature_cache": True,
        "feature_cache_views": 1,
        "train#trainer#max_epochs": 1,
        # SGD: AdamW's first step divides by |gradient|, which turns float noise where a gradient is ~0 into a
        # full learning-rate step; SGD's step is the averaged gradient itself
        "optimizer#_target_": "torch.optim.SGD",
    }
    single = workflow(
        TRAIN,
        "train",
        **tiny_overrides(tmp_path / "single", **common, batch_size=4, **{"train#dataloader#shuffle": False}),
    )
    single.run()
    single.finalize()
    ddp = {**tiny_overrides(tmp_path / "ddp", **common, batch_size=2), "train#sampler#shuffle": False}
    result = _torchrun("training", [TRAIN, str(CONFIGS / "multi_gpu_train.json")], ddp, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert output.count("2 views to compute") == 2 and "4 views to compute" not in output  # each view once
    cache = next((tmp_path / "ddp" / "eval" / "feature_cache").iterdir())
    assert len(list(cache.glob("*.pt"))) == 4 and not list(cache.glob(".*"))  # complete, no temporary files left
    states = [torch.load(tmp_path / d / "models" / "model.pt", weights_only=True) for d in ("single", "ddp")]
    assert sorted(states[0]) == sorted(states[1])
    initial = workflow(TRAIN, "train", **tiny_overrides(tmp_path / "init", **common)).parser.get_parsed_content(
        "network"
    )
    moved = [k for k in states[0] if not torch.equal(states[0][k], initial.state_dict()[k])]
    assert moved  # the step changed the decoder
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=1e-5, atol=1e-6)
