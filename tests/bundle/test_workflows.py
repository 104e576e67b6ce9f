from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import verify_metadata, verify_net_in_out
from PIL import Image

from segdino_monai.networks import SegDINO
from segdino_monai.reporting import RunFolder
from tests.bundle.conftest import CONFIGS, EVALUATE, INFERENCE, TRAIN, tiny_overrides, workflow
from tests.conftest import TINY_VIT


def test_metadata_verifies_offline(tmp_path):
    schema = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "meta_schema_20240725.json"
    if not schema.is_file():
        if os.environ.get("SEGDINO_REQUIRE_FIXTURES") == "1":
            pytest.fail(f"SEGDINO_REQUIRE_FIXTURES=1 but the bundle schema {schema} does not exist")
        pytest.skip(f"schema not found at {schema}")
    shutil.copy(schema, tmp_path / "schema.json")
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(tmp_path / "schema.json"))


def test_package_and_bundle_versions_agree():
    import re

    import segdino_monai

    pyproject = (CONFIGS.parents[1] / "pyproject.toml").read_text()  # tomllib is Python >= 3.11; we support 3.10
    metadata = json.loads((CONFIGS / "metadata.json").read_text())
    versions = {
        "pyproject.toml": re.search(r'^version = "([^"]+)"', pyproject, flags=re.MULTILINE)[1],
        "segdino_monai.__version__": segdino_monai.__version__,
        "metadata.json version": metadata["version"],
        "metadata.json required segdino-monai": metadata["required_packages_version"]["segdino-monai"],
    }
    assert len(set(versions.values())) == 1, versions
    assert metadata["version"] in metadata["changelog"]


def test_network_in_out_matches_metadata():
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=INFERENCE,
        n=4,
        **{"backbone_weights": "random", "network_def#backbone_kwargs": TINY_VIT},
    )


def test_train_writes_best_and_last_checkpoints(trained):
    models = trained / "models"
    assert (models / "model.pt").is_file()
    assert [p.name for p in models.glob("last*.pt")] == ["last_checkpoint_epoch=2.pt"]
    state = torch.load(models / "model.pt", weights_only=True)
    assert not any(k.startswith("backbone.") for k in state)  # the decoder only, the backbone stays in its file
    net = SegDINO(backbone_kwargs=TINY_VIT)
    net.load_state_dict(state)
    assert list((trained / "eval" / "tensorboard").iterdir())


def test_evaluate_metrics_match_an_independent_computation(trained):
    flow = workflow(EVALUATE, "train", **tiny_overrides(trained, save_predictions=True))
    flow.run()
    rows = list(csv.DictReader(open(trained / "eval" / "metrics_per_image.csv")))
    summary = json.loads((trained / "eval" / "metrics_summary.json").read_text())
    assert summary["num_images"] == len(rows) > 0
    for row in rows:
        image = Path(row["filename"])
        gt = np.asarray(Image.open(image.parent.parent / "masks" / image.name).convert("L")) > 127
        pred = np.asarray(Image.open(trained / "eval" / "predictions" / f"{image.stem}_mask.png")) > 0
        assert pred.shape == gt.shape  # at the original resolution
        inter, total, union = (pred & gt).sum(), pred.sum() + gt.sum(), (pred | gt).sum()
        dice = 2 * inter / total if total else 1.0
        iou = inter / union if union else 1.0
        assert float(row["test_mean_dice"]) == pytest.approx(dice, abs=1e-5)
        assert float(row["test_mean_iou"]) == pytest.approx(iou, abs=1e-5)
    dice_mean = np.mean([float(r["test_mean_dice"]) for r in rows])
    assert summary["metrics"]["test_mean_dice"]["mean"] == pytest.approx(dice_mean, abs=1e-6)


def test_inference_on_a_folder_writes_masks_and_overlays(trained, fixtures_dir, tmp_path):
    images = fixtures_dir / "dermoscopy" / "ham10000" / "images"
    folder = tmp_path / "images"
    folder.mkdir()
    for source in sorted(images.iterdir())[:2]:
        shutil.copy(source, folder / source.name)
    out = tmp_path / "out"
    for mode in ("resize", "native"):
        flow = workflow(
            [INFERENCE, str(CONFIGS / "dermoscopy.json")],
            "infer",
            **tiny_overrides(trained, dataset_dir=str(folder), output_dir=str(out / mode), inference_mode=mode),
            save_nifti=True,
        )
        assert flow.check_properties() == []
        flow.run()
        for source in folder.iterdir():
            mask = np.asarray(Image.open(out / mode / f"{source.stem}_mask.png"))
            overlay = Image.open(out / mode / f"{source.stem}_overlay.png")
            assert mask.shape == np.asarray(Image.open(source)).shape[:2] == overlay.size[::-1]
            assert set(np.unique(mask)) <= {0, 255}
            assert (out / mode / f"{source.stem}_mask.nii.gz").is_file()


def test_missing_weights_file_is_a_clear_error(tmp_path, tiny_datalist):
    missing = str(tmp_path / "dinov3_missing.pth")
    overrides = tiny_overrides(tmp_path, backbone_weights=missing, datalist=str(tiny_datalist))
    flow = workflow(TRAIN, "train", **overrides)
    with pytest.raises(Exception) as err:
        flow.parser.get_parsed_content("network_def")
    assert "dinov3_missing.pth" in "".join(str(e) for e in _chain(err.value))


def _chain(error: BaseException):
    while error is not None:
        yield error
        error = error.__cause__


def test_resume_continues_the_run(tmp_path):
    def train(max_epochs: int, resume: bool):
        flow = workflow(
            TRAIN, "train", **tiny_overrides(tmp_path, resume=resume, **{"train#trainer#max_epochs": max_epochs})
        )
        flow.run()
        return flow.parser.get_parsed_content("train#trainer"), flow.parser.get_parsed_content("optimizer")

    first, _ = train(1, resume=False)
    per_epoch = first.state.iteration
    assert first.state.epoch == 1 and per_epoch > 0
    resumed, optimizer = train(2, resume=True)
    assert (resumed.state.epoch, resumed.state.iteration) == (2, 2 * per_epoch)
    steps = {int(s["step"]) for s in optimizer.state.values()}
    assert steps == {2 * per_epoch}  # AdamW's moments continued, not restarted
    assert [p.name for p in (tmp_path / "models").glob("last*.pt")] == ["last_checkpoint_epoch=2.pt"]


def test_multi_gpu_config_runs_under_torchrun(tmp_path):
    """DDP with DistributedSampler, 2 processes, gloo on the CPU; rank 0 alone writes the checkpoints."""
    overrides = tiny_overrides(tmp_path, **{"train#trainer#max_epochs": 2})
    args = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "monai.bundle", "run", "training",
        "--config_file", f"['{TRAIN}','{CONFIGS / 'multi_gpu_train.json'}']",
        "--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", str(CONFIGS / "logging.conf"), *args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch[2] Complete" in result.stdout + result.stderr
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    SegDINO(backbone_kwargs=TINY_VIT).load_state_dict(state)  # saved unwrapped: no "module." prefix
    checkpoint = torch.load(tmp_path / "models" / "last_checkpoint_epoch=2.pt", weights_only=True)
    assert checkpoint["trainer"]["iteration"] == 2 * checkpoint["trainer"]["epoch_length"]
    epochs = json.loads(RunFolder(tmp_path / "eval").epoch_metrics.read_text())["epochs"]  # rank 0's handler
    assert [e["epoch"] for e in epochs] == [1, 2] and all("val_mean_dice" in e["metrics"] for e in epochs)


def test_short_training_on_kvasir_reduces_the_loss(fixtures_dir, tmp_path):
    from monai.data import load_decathlon_datalist

    from segdino_monai.data import prepare_datalist

    prepare_datalist(fixtures_dir / "endoscopy" / "kvasir_seg_256", tmp_path / "datalist.json", layout="kvasir")
    overrides = tiny_overrides(tmp_path, datalist=str(tmp_path / "datalist.json"), learning_rate=0.01, batch_size=8)
    overrides["train#dataset#data"] = load_decathlon_datalist(tmp_path / "datalist.json", data_list_key="training")[:48]
    overrides["validate#dataset#data"] = load_decathlon_datalist(tmp_path / "datalist.json", "validation")[:8]
    overrides["train#trainer#max_epochs"] = 6
    flow = workflow(TRAIN, "train", **overrides)
    trainer = flow.parser.get_parsed_content("train#trainer")
    losses: dict[int, list[float]] = {}

    def record(engine) -> None:
        losses.setdefault(engine.state.epoch, []).append(float(engine.state.output[0]["loss"]))

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    flow.run()
    first, last = np.mean(losses[1]), np.mean(losses[6])
    assert last < 0.9 * first, (first, last)


def test_traced_export_matches_pytorch(trained, tmp_path):
    from monai.bundle import ckpt_export

    ckpt_export(
        net_id="network_def",
        filepath=str(tmp_path / "model.ts"),
        ckpt_file=str(trained / "models" / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=INFERENCE,
        use_trace=True,
        input_shape=[1, 3, 64, 64],
        **{"backbone_weights": "random", "network_def#backbone_kwargs": TINY_VIT, "backbone_precision": "float32"},
    )
    traced = torch.jit.load(str(tmp_path / "model.ts"))
    net = SegDINO(backbone_kwargs=TINY_VIT).eval()
    net.load_decoder(trained / "models" / "model.pt")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), net(x), rtol=1e-4, atol=1e-5)


def test_cli_wraps_the_bundle_workflows(trained, tmp_path, fixtures_dir):
    from segdino_monai.cli import main

    common = [
        "--backbone-weights",
        "random",
        "--spatial-size",
        "64",
        "64",
        "--set",
        f"network_def#backbone_kwargs={TINY_VIT}",
    ]
    out = tmp_path / "cli"
    assert (
        main(["train", *common, "--epochs", "1", "--output-dir", str(out / "eval"), "--ckpt-dir", str(out / "m")]) == 0
    )
    assert (out / "m" / "model.pt").is_file()
    assert main(["evaluate", *common, "--output-dir", str(out / "eval"), "--ckpt-dir", str(out / "m")]) == 0
    summary = json.loads((out / "eval" / "metrics_summary.json").read_text())
    assert set(summary["metrics"]) == {"test_mean_dice", "test_mean_iou", "test_hd95"}
    images = fixtures_dir / "endoscopy" / "cvc_endoscene_512" / "images"
    folder = tmp_path / "images"
    folder.mkdir()
    first = sorted(images.iterdir())[0]
    shutil.copy(first, folder / first.name)
    args = [
        "infer",
        *common,
        "--dataset-dir",
        str(folder),
        "--output-dir",
        str(out / "pred"),
        "--ckpt-dir",
        str(out / "m"),
    ]
    assert main([*args, "--largest-component", "--fill-holes"]) == 0
    mask = np.asarray(Image.open(out / "pred" / f"{first.stem}_mask.png"))
    assert mask.shape == np.asarray(Image.open(first)).shape[:2]
    assert main(["infer", "--dataset-dir", str(tmp_path / "nowhere"), "--backbone-weights", "random"]) == 2


def test_training_from_the_feature_cache(tmp_path):
    overrides = tiny_overrides(tmp_path, feature_cache=True, feature_cache_views=2, **{"train#trainer#max_epochs": 2})
    flow = workflow(TRAIN, "train", **overrides)
    assert flow.check_properties() == []
    flow.run()
    caches = list((tmp_path / "eval" / "feature_cache").iterdir())
    assert len(caches) == 1
    n_train = len(flow.parser.get_parsed_content("train#dataset"))
    assert len(list(caches[0].glob("*.pt"))) == 2 * n_train  # two views per training image
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    SegDINO(backbone_kwargs=TINY_VIT).load_state_dict(state)  # the same checkpoint as live training
    assert [p.name for p in (tmp_path / "models").glob("last*.pt")] == ["last_checkpoint_epoch=2.pt"]
