from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import timm
import torch

from segdino_monai.cli import main
from tests.conftest import TINY_VIT
from tests.networks.dinov3_files import meta_state_dict, tiny_timm_model, write_meta_file


def test_check_weights_names_both_sizes_for_a_wrong_size_file(tmp_path, caplog):
    full_size = tiny_timm_model(**{k: v for k, v in TINY_VIT.items() if k != "depth"}, depth=12)
    path = write_meta_file(full_size, tmp_path / "dinov3_tiny.pth")
    with pytest.raises(SystemExit):
        main(["check-weights", "--help"])
    with caplog.at_level(logging.INFO):
        # A tiny file is not ViT-S: the command must say so and fail with status 2.
        assert main(["check-weights", str(path), "--backbone", "vits16"]) == 2
    assert "embed_dim 48, 12 blocks" in caplog.text and "embed_dim 384" in caplog.text


def test_check_weights_missing_file(tmp_path, caplog):
    assert main(["check-weights", str(tmp_path / "none.pth")]) == 2
    assert "not found" in caplog.text


def test_check_weights_accepts_a_full_size_meta_file(tmp_path, caplog):
    vits16 = timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, num_classes=0)
    torch.save(meta_state_dict(vits16), tmp_path / "dinov3_vits16_pretrain.pth")
    with caplog.at_level(logging.INFO):
        assert main(["check-weights", str(tmp_path / "dinov3_vits16_pretrain.pth")]) == 0
    assert "21596160 parameters, embed_dim 384, taps [2, 5, 8, 11]" in caplog.text


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A 6-image 64x64 demo datalist."""
    from segdino_monai.data.demo import make_demo_dataset

    return Path(make_demo_dataset(tmp_path / "data", "endoscopy", num_images=6, size=(64, 64), seed=0))


def _bundle_args(tmp_path: Path) -> list[str]:
    """Options that keep a bundle command's outputs in ``tmp_path`` and its network tiny."""
    return [
        "--output-dir",
        str(tmp_path / "eval"),
        "--ckpt-dir",
        str(tmp_path / "models"),
        "--backbone-weights",
        "random",
        "--spatial-size",
        "64",
        "64",
        "--set",
        f"network_def#backbone_kwargs={TINY_VIT}",
    ]


def test_bundle_commands_reject_bad_options_before_running(tmp_path, errors):
    args = _bundle_args(tmp_path)
    cases = [
        (
            ["train", *args, "--set", "feature_cahce=true"],
            "Unknown config id 'feature_cahce' (in --set feature_cahce=...)",
        ),
        (["train", *args, "--set", "resume"], "--set takes ID=VALUE (e.g. --set feature_cache=true), got 'resume'."),
        (["train", *args, "--spatial-size", "250", "250"], "Option spatial_size must be two positive multiples of 16"),
        (
            ["infer", *_bundle_args(tmp_path), "--set", "spatial_size=abc"],
            "Option spatial_size must be two positive multiples of 16",
        ),
        (["train", *args, "--bundle-root", str(tmp_path)], f"Bundle config {tmp_path}/configs/train.json not found"),
        (["evaluate", *args, "--set", "save_predictions=maybe"], "Option save_predictions must be true or false"),
        (["train", *args, "--tracking-uri", "sqlite:///x.db"], "--tracking-uri needs --tracking mlflow"),
        (["train", *args, "--set", "experiment_name=x"], "Unknown config id 'experiment_name' (in --set"),
    ]
    for argv, message in cases:
        errors.clear()
        assert main(argv) == 2, argv
        assert len(errors) == 1 and errors[0].startswith(message), (argv, errors)
        if "cahce" in argv[-1]:
            assert "did you mean 'feature_cache'" in errors[0]
    assert not (tmp_path / "models").exists()  # nothing trained
    assert not (tmp_path / "eval").exists()  # every option is checked before the demo data or any output is made


def test_bundle_commands_report_bad_datalists(tmp_path, tiny_data, errors):
    args = [*_bundle_args(tmp_path), "--set", "num_workers=0"]
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"training": [}')
    content = json.loads(tiny_data.read_text())
    empty = tmp_path / "empty_validation.json"
    base = tiny_data.parent
    absolute = {s: [{k: str(base / v) for k, v in e.items()} for e in content[s]] for s in ("training", "test")}
    empty.write_text(json.dumps({**absolute, "validation": []}))
    cases = [
        (["train", *args, "--datalist", str(malformed)], f"Datalist {malformed} is not valid JSON (line 1"),
        (["train", *args, "--datalist", str(tmp_path / "none.json")], f"Datalist {tmp_path / 'none.json'} not found"),
        (["train", *args, "--datalist", str(empty)], f"Datalist {empty}: the 'validation' list is empty"),
        (["evaluate", *args, "--datalist", str(empty), "--split", "validation"], f"Datalist {empty}: the 'validation'"),
        (
            ["train", *args, "--datalist", str(tiny_data), "--set", "resume=maybe"],
            "Option resume must be true or false",
        ),
    ]
    for argv, message in cases:
        errors.clear()
        assert main(argv) == 2, argv
        assert len(errors) == 1 and errors[0].startswith(message), (argv, errors)
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").iterdir())  # no model.pt


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ValueError("operands could not be broadcast together with shapes (3,4) (4,3)"), None),  # a bug
        (KeyError("pred"), None),
        ("input", 2),
        ("path", 2),
    ],
)
def test_bad_input_is_one_line_and_exit_2_and_a_bug_keeps_its_traceback(tmp_path, monkeypatch, caplog, error, code):
    """Only InputError (and errors about a path the user gave) are bad input; a bare ValueError is a bug."""
    import segdino_monai.reporting
    from segdino_monai.utils.errors import InputError

    def write_report(run_dir, *args):
        if error == "input":
            raise InputError(f"{run_dir}: not an evaluation folder; pass the --output-dir of evaluate")
        if error == "path":
            open(run_dir / "metrics_per_image.csv")  # noqa: SIM115 - raises FileNotFoundError naming the file
        raise error

    monkeypatch.setattr(segdino_monai.reporting, "write_report", write_report)
    if code is None:
        with pytest.raises(type(error)) as raised:  # main re-raises: the interpreter prints the traceback, exit 1
            main(["report", str(tmp_path)])
        assert raised.value is error
        return
    with caplog.at_level(logging.INFO):
        assert main(["report", str(tmp_path)]) == code
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(tmp_path) in errors[0] and "\n" not in errors[0]
    assert "Traceback" not in caplog.text


def test_a_bug_in_a_command_exits_1_with_a_traceback_from_the_console(tmp_path):
    """The console script (``python -m segdino_monai.cli``): a bare ValueError prints its traceback, status 1."""
    import subprocess
    import sys

    code = (
        "import sys, segdino_monai.reporting as r\n"
        "def bug(*a): raise ValueError('shape bug')\n"
        "r.write_report = bug\n"
        "from segdino_monai.cli import main\n"
        f"sys.exit(main(['report', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: shape bug" in done.stderr
