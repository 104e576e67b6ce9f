"""Checks of the bundle's inputs: datalists, spatial_size, checkpoints to resume and config ids on command lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from segdino_monai.data.datalist_reading import check_splits, load_datalist
from segdino_monai.utils.errors import InputError
from segdino_monai.workflows import check_command_line_ids, check_config_ids, check_spatial_size, latest_checkpoint

CONFIGS = Path(__file__).resolve().parents[2] / "bundle" / "configs"
BUNDLE_MAIN = str(Path(sys.executable).parent / "lib" / "site-packages" / "monai" / "bundle" / "__main__.py")


@pytest.fixture
def pair(tmp_path) -> dict[str, str]:
    (tmp_path / "a.png").write_bytes(b"image")
    (tmp_path / "a_mask.png").write_bytes(b"mask")
    return {"image": "a.png", "label": "a_mask.png"}


def _write(path: Path, content) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_load_datalist_reads_relative_paths(tmp_path, pair):
    path = _write(tmp_path / "list.json", {"training": [pair], "validation": [pair]})
    assert load_datalist(path, "training") == [
        {"image": str(tmp_path / "a.png"), "label": str(tmp_path / "a_mask.png")}
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"training": [', r"is not valid JSON \(line 1, column 15"),
        ("[1, 2]", "must be a JSON object of lists"),
        ({"validation": []}, r"has no 'training' list \(its lists: validation\)"),
        ({"training": {"image": "a.png"}}, "'training' must be a list"),
        ({"training": []}, "the 'training' list is empty; nothing to train on"),
        ({"training": [{"image": "a.png"}]}, r"entry 0 of 'training' \(\{\"image\": \"a.png\"\}\) has no 'label'"),
        ({"training": ["a.png"]}, "entry 0 of 'training' .* has no 'image' and no 'label'"),
        (
            {"training": [{"image": "a.png", "label": "gone.png"}]},
            r"1 file\(s\) of the 'training' list do not exist: .*gone.png",
        ),
    ],
    ids=["malformed", "not-object", "no-key", "not-list", "empty", "no-label", "string-entry", "missing-file"],
)
def test_load_datalist_names_the_file_and_the_problem(tmp_path, pair, content, message):
    path = _write(tmp_path / "list.json", content)
    with pytest.raises(InputError, match=message) as err:
        load_datalist(path, "training")
    assert str(err.value).startswith(f"Datalist {path}")
    assert "\n" not in str(err.value)


def test_empty_validation_and_evaluation_lists_say_what_to_do(tmp_path, pair):
    path = _write(tmp_path / "list.json", {"training": [pair], "validation": [], "test": []})
    with pytest.raises(InputError, match="the 'validation' list is empty; training picks model.pt .* --val_split"):
        load_datalist(path, "validation", "validation")
    with pytest.raises(InputError, match="the 'test' list is empty; nothing to evaluate: .*--split"):
        load_datalist(path, "test", "evaluation")
    with pytest.raises(InputError, match="cannot be read"):
        load_datalist(tmp_path / "none.json", "training")


def test_check_splits_names_the_empty_list():
    check_splits({"training": [1], "validation": [2]})
    with pytest.raises(InputError, match="The 'validation' list of this training run is empty"):
        check_splits({"training": [1], "validation": []})


@pytest.mark.parametrize("value", [[256, 256], (64, 128), [16, 32]])
def test_spatial_size_accepts_multiples_of_16(value):
    assert check_spatial_size(value) == list(value)


@pytest.mark.parametrize("value", [[250, 250], [0, 256], [-16, 16], "abc", [256], [256, 256, 3], [True, 16], 256, None])
def test_spatial_size_rejects_the_rest_naming_the_option(value):
    with pytest.raises(InputError, match=r"Option spatial_size must be two positive multiples of 16"):
        check_spatial_size(value)


def test_latest_checkpoint_is_the_newest_file_not_the_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path) == ""
    with pytest.raises(InputError, match=f"Cannot resume .* in {tmp_path}"):
        latest_checkpoint(tmp_path, required=True)
    old, new = tmp_path / "last_checkpoint_epoch=9.pt", tmp_path / "last_checkpoint_epoch=2.pt"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, ns=(1_000_000_000, 1_000_000_000))  # an earlier run's file
    assert latest_checkpoint(tmp_path) == str(new)
    os.utime(new, ns=(1_000_000_000, 1_000_000_000))  # same time: the epoch decides
    assert latest_checkpoint(tmp_path) == str(old)


@pytest.fixture(scope="module")
def train_config() -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json")])
    return parser


def test_config_ids_known_nested_and_new_component_arguments_pass(train_config):
    ids = ["feature_cache", "train#trainer#max_epochs", "network_def#backbone_kwargs", "train#dataloader#drop_last"]
    check_config_ids(train_config, ids + ["validate::handlers::0::iteration_log", "_meta_#version"])


@pytest.mark.parametrize(
    ("config_id", "message"),
    [
        ("feature_cahce", "Unknown config id 'feature_cahce' .*did you mean 'feature_cache'"),
        ("resum", "Unknown config id 'resum' .*did you mean 'resume'"),
        ("trian#trainer#max_epochs", "Unknown config id 'trian' .*did you mean 'train'"),
        ("train#trainr#max_epochs", "Unknown config id 'train#trainr' .*did you mean 'train#trainer'"),
        ("zzz", r"Unknown config id 'zzz' \(in --set zzz=...\): the bundle's configs have no such option\. "),
    ],
)
def test_unknown_config_ids_are_named_with_the_closest_known_one(train_config, config_id, message):
    with pytest.raises(InputError, match=message):
        check_config_ids(train_config, [config_id])


def _argv(*args: str) -> list[str]:
    return [BUNDLE_MAIN, "run", "training", "--config_file", str(CONFIGS / "train.json"), *args]


def test_command_line_ids_read_as_monai_bundle_run_reads_them(tmp_path):
    check_command_line_ids(_argv("--feature_cache", "true", "--network_def#backbone_kwargs={'depth': 4}", "--resume"))
    check_command_line_ids(_argv("--meta_file", str(CONFIGS / "metadata.json"), "--logging_file", "x.conf"))
    with pytest.raises(InputError, match=r"Unknown config id 'feature_cahce' \(in --feature_cahce\)"):
        check_command_line_ids(_argv("--resume=true", "--feature_cahce", "true"))
    with pytest.raises(InputError, match="'spatial_sizee'"):
        check_command_line_ids(_argv("--spatial-sizee", "[64,64]"))  # fire reads dashes as underscores
    both = f"['{CONFIGS / 'train.json'}','{CONFIGS / 'evaluate.json'}']"
    check_command_line_ids([BUNDLE_MAIN, "run", "evaluating", "--config_file", both, "--eval_split", "validation"])
    with pytest.raises(InputError, match="eval_split"):
        check_command_line_ids(_argv("--eval_split", "validation"))  # train.json alone has no eval_split
    # MONAI's tracking adds its own ids
    check_command_line_ids(_argv("--tracking", "mlflow", "--experiment_name", "x", "--tracking_uri", "file:/tmp/x"))
    with pytest.raises(InputError, match="'experiment_name'"):
        check_command_line_ids(_argv("--experiment_name", "x"))  # without --tracking, no tracking ids
    # a tracking settings file brings its own ids
    settings = _write(tmp_path / "tracking.json", {"handlers_id": {}, "configs": {"my_server": "http://x"}})
    check_command_line_ids(_argv("--tracking", str(settings), "--my_server", "http://y"))
    with pytest.raises(InputError, match="'my_server'"):
        check_command_line_ids(_argv("--tracking", "mlflow", "--my_server", "http://y"))
    # an args_file holds config_file and overrides too
    args_file = _write(tmp_path / "args.json", {"config_file": str(CONFIGS / "train.json"), "feature_cahce": True})
    with pytest.raises(InputError, match="feature_cahce"):
        check_command_line_ids([BUNDLE_MAIN, "run", "training", "--args_file", str(args_file)])


def test_command_line_ids_are_not_read_in_other_processes():
    check_command_line_ids(["/usr/bin/segdino", "train", "--feature_cahce", "true"])
    check_command_line_ids(["pytest", "run", "--config_file", str(CONFIGS / "train.json"), "--feature_cahce", "1"])
    check_command_line_ids()  # this process: pytest


def test_parsing_the_configs_makes_no_files_until_a_list_is_read(tmp_path):
    """The datalist is a component that acts when the workflow reads a list, never while the config is parsed."""
    from monai.bundle import ConfigParser

    from tests.bundle.conftest import EVALUATE, tiny_overrides

    parser = ConfigParser()
    parser.read_config(EVALUATE)
    parser.update(tiny_overrides(tmp_path))
    for key in ("network_def", "datalist_source", "validate#preprocessing", "train#preprocessing", "report_context"):
        parser.get_parsed_content(key)
    assert not (tmp_path / "eval").exists()  # no demo dataset, no datalist written
    entries = parser.get_parsed_content("validate#dataset#data")
    demo = tmp_path / "eval" / "demo_endoscopy"
    assert (demo / "datalist.json").is_file() and len(entries) > 0
    assert all(Path(e["image"]).is_relative_to(demo) and Path(e["label"]).is_file() for e in entries)


def test_class_names_must_name_each_foreground_class():
    from segdino_monai.utils.errors import InputError
    from segdino_monai.workflows import check_class_names

    check_class_names(None, 3)
    check_class_names(["benign", "malignant"], 3)
    check_class_names(["polyp"], 1)
    with pytest.raises(InputError, match="class_names has 1 names but num_classes 3 has 2 foreground"):
        check_class_names(["benign"], 3)
    with pytest.raises(InputError, match="must be a list of names"):
        check_class_names("benign,malignant", 3)
