"""``--set ID=VALUE``: one reader, and every command that takes it checks the ids before any work.

A typo'd id (``--set num_clases=2``) would otherwise become a new config key that nothing reads, and the run would
go on without the option. The check reads the bundle's configs only: the tests give no weights file, no decoder
checkpoint and no inputs, so a command that got past the check would fail on those instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segdino_monai.cli import build_parser, main
from tests.bundle.conftest import BUNDLE, command_env


def _command_lines(tmp_path: Path) -> dict[str, list[str]]:
    """A command line per command that takes --set; every output under ``tmp_path/out``, no model files anywhere."""
    out, missing = tmp_path / "out", tmp_path / "missing"
    model = ["--bundle-root", str(BUNDLE), "--backbone-weights", str(missing / "dinov3.pth")]
    serving = [*model, "--checkpoint", str(missing / "model.pt")]
    bundle = [*model, "--output-dir", str(out / "eval"), "--ckpt-dir", str(out / "models")]
    return {
        "train": ["train", *bundle, "--dataset-dir", str(missing)],
        "evaluate": ["evaluate", *bundle, "--dataset-dir", str(missing)],
        "infer": ["infer", *bundle, "--dataset-dir", str(missing)],
        "export": ["export", "-o", str(out / "model.onnx"), *serving],
        "dicom": ["dicom", str(missing / "in.dcm"), "-o", str(out / "dicom"), *serving],
        "video": ["video", str(missing / "in.mp4"), "-o", str(out / "video"), *serving],
        "dicom-node": ["dicom-node", "--forward", "PACS@127.0.0.1:1", "--store-dir", str(out / "node"), *serving],
        "label-server": [
            "label-server",
            *model,
            "--studies",
            str(missing),
            "--app-dir",
            str(out / "app"),
            "--env",
            str(out / "env"),
        ],
    }


COMMANDS = list(_command_lines(Path("x")))


def test_every_command_with_set_is_tested():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    taking_set = {name for name, sub in commands.items() if any("--set" in a.option_strings for a in sub._actions)}
    assert taking_set == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_typo_in_a_set_id_stops_the_command_before_any_work(tmp_path, command):
    argv = [*_command_lines(tmp_path)[command], "--set", "num_clases=2"]
    done = subprocess.run(
        [sys.executable, "-m", "segdino_monai.cli", *argv],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("ERROR Unknown config id 'num_clases' (in --set num_clases=...)"), output
    assert "did you mean 'num_classes'" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing written
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("item", ["feature_cache", "=true", " =1"])
def test_a_set_without_id_or_value_is_one_line_and_exit_2(tmp_path, errors, command, item):
    """``--set foo`` was ``foo=''`` for dicom and label-server; now every command says what --set takes."""
    assert main([*_command_lines(tmp_path)[command], "--set", item]) == 2
    assert errors == [f"--set takes ID=VALUE (e.g. --set feature_cache=true), got {item!r}."]
    assert not (tmp_path / "out").exists()


def test_set_values_are_python_literals_where_they_parse():
    from segdino_monai.cli.options import set_overrides

    items = ["a=1", "b=[64, 64]", "c=true", "d=False", "e=x=y", " f =", "g#h={'depth': 2}"]
    assert set_overrides(items) == {
        "a": 1,
        "b": [64, 64],
        "c": "true",
        "d": False,
        "e": "x=y",
        "f": "",
        "g#h": {"depth": 2},
    }
    assert set_overrides(None) == {}


def test_label_server_accepts_training_ids_and_app_settings(tmp_path):
    """The served bundle trains too: train.json's ids and the app's own settings (retrain_every) are ids."""
    from segdino_monai.cli.options import check_set_ids
    from segdino_monai.utils.errors import InputError

    ok = {"retrain_every": 3, "learning_rate": 1e-3, "temporal_smoothing": False, "modality": "ultrasound"}
    check_set_ids(ok, BUNDLE, tasks=("infer", "train"), allowed={"retrain_every"})
    with pytest.raises(InputError, match="'retrain_evry'"):
        check_set_ids({"retrain_evry": 3}, BUNDLE, tasks=("infer", "train"), allowed={"retrain_every"})
    with pytest.raises(InputError, match="'learning_rate'"):  # not an inference id
        check_set_ids({"learning_rate": 1e-3}, BUNDLE)
    check_set_ids({"anything": 1}, tmp_path)  # not a bundle: the command reports that itself, as before
