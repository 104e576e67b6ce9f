"""The paper preset (bundle/configs/paper.json): its resolved settings, a short real run, the CLI and the cache."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import load_decathlon_datalist
from monai.transforms import Invertd, Randomizable
from monai.utils import set_determinism
from PIL import Image

from segdino_monai.workflows import PRESETS, bundle_workflow
from tests.bundle.conftest import BUNDLE, CONFIGS, EVALUATE, TRAIN, tiny_overrides
from tests.conftest import TINY_VIT

PAPER = str(CONFIGS / "paper.json")
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def merged(files: list[str], **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(files)
    parser.update({"bundle_root": str(BUNDLE), "backbone_weights": "random", **overrides})
    return parser


def ddti_entry(fixtures_dir: Path) -> dict[str, str]:
    """A grey, non-square ultrasound image and its mask."""
    image = sorted((fixtures_dir / "ultrasound" / "ddti" / "images").iterdir())[0]
    return {"image": str(image), "label": str(fixtures_dir / "ultrasound" / "ddti" / "masks" / image.name)}


def test_paper_preset_resolves_to_the_paper_settings(fixtures_dir, tmp_path):
    parser = merged([TRAIN, PAPER], **{"network_def#backbone_kwargs": TINY_VIT, "output_dir": str(tmp_path)})
    assert parser.get_parsed_content("backbone") == "vits16"
    assert parser.get_parsed_content("spatial_size") == [256, 256]
    loss = parser.get_parsed_content("loss")
    assert type(loss) is torch.nn.BCEWithLogitsLoss and loss.pos_weight is None and loss.reduction == "mean"
    optimizer = parser.get_parsed_content("optimizer")
    assert type(optimizer) is torch.optim.AdamW
    assert [(g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [(1e-4, 1e-4)]
    scheduler = parser.get_parsed_content("lr_scheduler")
    lrs = []
    for _ in range(60):  # more epochs than a run has: no warm-up, no decay
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == [1e-4] * 60 and "last_epoch" in scheduler.state_dict()  # the checkpoint handler saves it
    assert parser.get_parsed_content("train#dataloader#batch_size") == 4
    assert parser.get_parsed_content("train#dataloader#drop_last") is True
    assert parser.get_parsed_content("train#trainer#max_epochs") == 50  # for the demo data too (no dataset here)
    assert parser.get_parsed_content("train#trainer#amp") is False
    assert parser.get_parsed_content("validate#evaluator#amp") is False
    assert parser.get_parsed_content("val_split") == "validation"  # selection on validation; test only on request

    parser.get_parsed_content("initialize")  # set_determinism(seed=@seed)
    drawn = torch.rand(4)
    set_determinism(seed=42)
    assert torch.equal(drawn, torch.rand(4))
    set_determinism(seed=None)

    train = parser.get_parsed_content("train#preprocessing")
    assert not any(isinstance(t, Randomizable) for t in train.flatten().transforms)
    entry = ddti_entry(fixtures_dir)
    out = train(dict(entry))
    grey = Image.open(entry["image"])
    assert grey.mode == "L" and grey.size[0] != grey.size[1]
    expected = np.asarray(grey.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC)) / 255.0
    expected = ((expected - MEAN) / STD).transpose(2, 0, 1)
    assert out["image"].shape == (3, 256, 256) and out["label"].shape == (1, 256, 256)
    assert out["image"].mean().item() == pytest.approx(expected.mean(), abs=1e-5)
    assert out["image"].std().item() == pytest.approx(expected.std(ddof=1), abs=1e-5)
    np.testing.assert_allclose(out["image"].numpy(), expected, atol=1e-5)
    assert train(dict(entry))["image"].equal(out["image"])


def test_paper_evaluation_scores_at_the_model_size(fixtures_dir, tmp_path):
    parser = merged(EVALUATE + [PAPER], **{"network_def#backbone_kwargs": TINY_VIT, "output_dir": str(tmp_path)})
    assert parser.get_parsed_content("metrics_at_original_size") is False
    post = parser.get_parsed_content("validate#postprocessing")
    applied = [getattr(t, "transform", t) for t in post.flatten().transforms if getattr(t, "enabled", True)]
    assert not any(isinstance(t, Invertd) for t in applied)
    dice = parser.get_parsed_content("validate#key_metric#test_mean_dice#metric_fn")
    iou = parser.get_parsed_content("validate#plain_metrics#test_mean_iou#metric_fn")
    assert dice.ignore_empty is False and iou.ignore_empty is False  # empty truth and prediction score 1
    entry = ddti_entry(fixtures_dir)
    out = parser.get_parsed_content("validate#preprocessing")(dict(entry))
    expected = np.asarray(Image.open(entry["label"]).convert("L").resize((256, 256), Image.Resampling.NEAREST)) > 127
    assert out["label"].shape == (1, 256, 256)
    np.testing.assert_array_equal(out["label"][0].numpy().astype(bool), expected)
    default = merged(EVALUATE, **{"output_dir": str(tmp_path)})
    switch = default.get_parsed_content("validate#postprocessing").transforms[1]
    assert switch.enabled and isinstance(switch.transform, Invertd)  # the default still scores natively


def test_short_paper_run_and_evaluation_match_an_independent_computation(fixtures_dir, tmp_path):
    from segdino_monai.data import prepare_datalist

    datalist = tmp_path / "datalist.json"
    prepare_datalist(fixtures_dir / "endoscopy" / "cvc_endoscene_512", datalist, layout="generic")
    overrides = tiny_overrides(tmp_path, datalist=str(datalist))
    size = overrides["spatial_size"]
    train = bundle_workflow("train", preset="paper", **overrides, **{"train#trainer#max_epochs": 1})
    train.initialize()
    train.run()
    train.finalize()
    trainer = train.parser.get_parsed_content("train#trainer")
    n_train = len(load_decathlon_datalist(str(datalist), data_list_key="training"))
    assert trainer.state.epoch == 1 and trainer.state.iteration == n_train // 4  # batch 4, last partial batch dropped

    evaluate = bundle_workflow("evaluate", preset="paper", **overrides, save_predictions=True)
    evaluate.initialize()
    _shift_decoder_bias(evaluate, tmp_path / "models" / "model.pt")
    evaluate.run()
    evaluate.finalize()

    labels = {e["image"]: e["label"] for e in load_decathlon_datalist(str(datalist), data_list_key="test")}
    rows = list(csv.DictReader(open(tmp_path / "eval" / "metrics_per_image.csv")))
    assert sorted(r["filename"] for r in rows) == sorted(labels)  # one row per test image
    dices = []
    for row in rows:
        stem = Path(row["filename"]).stem
        pred = np.asarray(Image.open(tmp_path / "eval" / "predictions" / f"{stem}_mask.png")) > 0
        grey = Image.open(labels[row["filename"]]).convert("L").resize(size[::-1], Image.Resampling.NEAREST)
        truth = np.asarray(grey) > 127
        assert pred.shape == truth.shape == tuple(size)  # scored at the model size, not the original 512x512
        reference = np.asarray(Image.open(tmp_path / "eval" / "predictions" / f"{stem}_label.png")) > 0
        np.testing.assert_array_equal(reference, truth)  # the report shows the reference as it was scored
        overlay = Image.open(tmp_path / "eval" / "predictions" / f"{stem}_overlay.png")
        assert overlay.size == tuple(size[::-1])
        inter, total, union = (pred & truth).sum(), pred.sum() + truth.sum(), (pred | truth).sum()
        dices.append(2 * inter / total if total else 1.0)
        assert float(row["test_mean_dice"]) == pytest.approx(dices[-1], abs=1e-5)
        assert float(row["test_mean_iou"]) == pytest.approx(inter / union if union else 1.0, abs=1e-5)
    assert 0.0 < np.mean(dices) < 1.0  # predictions neither empty nor perfect: the comparison means something
    summary = json.loads((tmp_path / "eval" / "metrics_summary.json").read_text())
    assert summary["context"]["metrics computed at"] == f"the model input size {size}"
    assert f"the model input size {size}" in (tmp_path / "eval" / "report.html").read_text()


def _shift_decoder_bias(flow, model_file: Path) -> None:
    """Move the output bias to the median logit of the first test image, so that predictions are mixed.

    One epoch at lr 1e-4 on a random tiny backbone predicts background everywhere, and Dice 0 against 0 would
    check nothing. The evaluator's own network (loaded from ``model_file`` when it starts) gives the logits.
    """
    network = flow.parser.get_parsed_content("network")
    state = torch.load(model_file, weights_only=True)
    network.load_state_dict(state)
    first = flow.parser.get_parsed_content("validate#dataset")[0]["image"]
    with torch.no_grad():
        median = float(network(torch.as_tensor(first)[None].to(next(network.parameters()).device)).median())
    state["decoder.layers.0.conv.bias"] -= median
    torch.save(state, model_file)


def test_cli_preset_appends_paper_json(monkeypatch, tmp_path):
    from segdino_monai import cli
    from segdino_monai.workflows import runner

    calls = []
    monkeypatch.setattr(runner, "run_bundle", lambda *args, **kwargs: calls.append((args, kwargs)) or 0)
    assert cli.main(["train", "--preset", "paper", "--epochs", "2", "--output-dir", str(tmp_path)]) == 0
    assert cli.main(["evaluate", "--preset", "paper", "--output-dir", str(tmp_path)]) == 0
    assert cli.main(["train", "--output-dir", str(tmp_path)]) == 0
    assert [(args[0], kwargs["preset"]) for args, kwargs in calls] == [
        ("train", "paper"),
        ("evaluate", "paper"),
        ("train", "default"),
    ]
    assert calls[0][0][2]["train#trainer#max_epochs"] == 2  # flags still override the preset
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--preset", "nnunet"])
    assert exit_info.value.code == 2
    choices = next(a.choices for a in _subparser(cli, "train")._actions if a.dest == "preset")
    assert sorted(choices) == sorted(PRESETS)

    flow = bundle_workflow("train", BUNDLE, preset="paper", output_dir=str(tmp_path))
    assert flow.parser.get_parsed_content("protocol") == "paper"
    steps = [type(t).__name__ for t in flow.parser.get_parsed_content("train#preprocessing").transforms]
    assert steps == ["LoadRGBImaged", "LoadMaskd", "EnsureRGBd", "PILResized", "ScaleIntensityRanged"] + [
        "NormalizeIntensityd",
        "EnsureTyped",
    ]
    assert flow.parser.get_parsed_content("train#trainer#max_epochs") == 50
    flow = bundle_workflow("evaluate", BUNDLE, preset="paper", output_dir=str(tmp_path))
    assert flow.parser.get_parsed_content("metrics_at_original_size") is False and flow.parser["eval_split"] == "test"
    assert not flow.parser.get_parsed_content("validate#postprocessing").transforms[1].enabled  # no Invertd
    assert bundle_workflow("train", BUNDLE, output_dir=str(tmp_path)).parser["protocol"] == "default"
    with pytest.raises(ValueError, match=r"preset must be one of \['default', 'paper'\], got 'nnunet'"):
        bundle_workflow("train", BUNDLE, preset="nnunet")
    with pytest.raises(ValueError, match="applies to train and evaluate"):
        bundle_workflow("infer", BUNDLE, preset="paper")


def _subparser(cli, name: str):
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return commands.choices[name]


def test_paper_preset_trains_from_the_feature_cache_under_its_own_key(fixtures_dir, tmp_path):
    from segdino_monai.data import prepare_datalist

    datalist = tmp_path / "datalist.json"
    prepare_datalist(fixtures_dir / "endoscopy" / "cvc_endoscene_512", datalist, layout="generic")
    training = load_decathlon_datalist(str(datalist), data_list_key="training")[:8]
    overrides = tiny_overrides(tmp_path, datalist=str(datalist), feature_cache=True)
    overrides.update({"train#dataset#data": training, "train#trainer#max_epochs": 2})
    flow = bundle_workflow("train", preset="paper", **overrides)
    flow.initialize()
    flow.run()
    flow.finalize()
    paper = flow.parser.get_parsed_content("train#dataset")
    assert len(list(paper.folder.glob("*.pt"))) == len(training)  # one view per image: nothing to augment
    assert json.loads((paper.folder / "config.json").read_text())["protocol"] == "paper"
    assert flow.parser.get_parsed_content("train#trainer").state.iteration == 2 * (len(training) // 4)
    assert (tmp_path / "models" / "model.pt").is_file()

    # the default preprocessing, everything else equal (the seed too: the same random backbone)
    default = bundle_workflow("train", **{**overrides, "feature_cache_views": 1, "seed": 42})
    default.initialize()
    backbones = [f.parser.get_parsed_content("network").backbone.state_dict() for f in (flow, default)]
    assert all(torch.equal(backbones[0][k], backbones[1][k]) for k in backbones[0])
    cache = default.parser.get_parsed_content("train#dataset")
    assert cache.key != paper.key and cache.folder != paper.folder
    assert json.loads((cache.folder / "config.json").read_text())["protocol"] == "default"
    default.finalize()
