"""The MONAI Label launcher without the MONAI Label environment: app layout, command line, environment reuse."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from segdino_monai.apps.monailabel import environment, server
from segdino_monai.cli import build_parser
from segdino_monai.utils.errors import InputError

BUNDLE = Path(__file__).resolve().parents[2] / "bundle"


def test_prepare_app_lays_out_the_app_and_the_bundle_copy(tmp_path):
    source = tmp_path / "bundle"
    source.mkdir()
    for name in ("configs", "docs"):
        (source / name).symlink_to(BUNDLE / name)
    (source / "models").mkdir()
    (source / "models" / "model.pt").write_bytes(b"decoder v1")
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    served = server.prepare_app(tmp_path / "app", source, str(weights), {"modality": "ultrasound"})
    assert served == (tmp_path / "app" / "model" / "segdino").resolve()
    assert (tmp_path / "app" / "main.py").is_file()
    assert (tmp_path / "app" / "lib" / "infers.py").is_file()
    assert (served / "configs" / "inference.json").is_file()
    assert (served / "models" / "model.pt").read_bytes() == b"decoder v1"
    overrides = json.loads((served / "configs" / "monailabel.json").read_text())
    assert overrides["backbone_weights"] == str(weights.resolve())
    assert overrides["modality"] == "ultrasound"
    assert "resolve_backbone_weights(@backbone_weights)" in overrides["network_def#weights"]
    # training reads backbone features from the cache in the app folder unless --set says otherwise
    assert overrides["feature_cache"] is True
    assert overrides["feature_cache_dir"] == str((tmp_path / "app" / "feature_cache").resolve())
    server.prepare_app(tmp_path / "app", source, str(weights), {"feature_cache": False})
    assert json.loads((served / "configs" / "monailabel.json").read_text())["feature_cache"] is False
    # a restart keeps the served (trained) model and refreshes the rest
    (served / "models" / "model.pt").write_bytes(b"trained")
    server.prepare_app(tmp_path / "app", source, "random")
    assert (served / "models" / "model.pt").read_bytes() == b"trained"
    assert json.loads((served / "configs" / "monailabel.json").read_text())["backbone_weights"] == "random"


def test_prepare_app_needs_the_weights_file_and_a_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="DINOv3 backbone weights not found"):
        server.prepare_app(tmp_path / "app", BUNDLE, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="No bundle"):
        server.prepare_app(tmp_path / "app", tmp_path, "random")


def _fake_env(path: Path, versions: dict[str, str]) -> Path:
    """An 'environment' whose python prints the given versions, and a monailabel script."""
    (path / "bin").mkdir(parents=True)
    python = path / "bin" / "python"
    python.write_text(f"#!/bin/sh\necho '{json.dumps(versions)}'\n")
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    (path / "bin" / "monailabel").write_text("")
    return path


GOOD = {"monailabel": "0.8.5", "monai": "1.5.2", "numpy": "1.26.4", "pydicom": "2.4.5", "torch": "2.15.0"}


def test_an_env_with_matching_marker_and_versions_is_reused(tmp_path, monkeypatch):
    env = _fake_env(tmp_path / "env", GOOD)
    marker = {"spec": {"requirements": list(environment.REQUIREMENTS), "package": str(environment.repo_root())}}
    (env / environment.MARKER).write_text(json.dumps(marker))
    monkeypatch.setattr(environment, "_pip", lambda *a: pytest.fail("pip must not run for a complete environment"))
    assert environment.ensure_label_env(env) == env.resolve()


@pytest.mark.parametrize("versions", [{**GOOD, "monai": "1.6.1"}, {**GOOD, "numpy": "2.4.6"}, {}])
def test_an_env_with_other_versions_is_reinstalled(tmp_path, monkeypatch, versions):
    env = _fake_env(tmp_path / "env", versions)
    marker = {"spec": {"requirements": list(environment.REQUIREMENTS), "package": str(environment.repo_root())}}
    (env / environment.MARKER).write_text(json.dumps(marker))
    calls = []
    monkeypatch.setattr(environment, "_pip", lambda path, *args: calls.append(args))
    with pytest.raises(RuntimeError, match="does not hold the pinned versions"):
        environment.ensure_label_env(env)
    assert any("monailabel==0.8.5" in args for args in calls)
    assert not (env / environment.MARKER).exists()


def test_server_command_is_offline_on_loopback(tmp_path):
    env = _fake_env(tmp_path / "env", GOOD)
    command = server.server_command(env, tmp_path / "app", tmp_path / "studies", port=8123)
    assert command[:4] == [str(env / "bin" / "python"), "-m", "monailabel.main", "start_server"]
    pairs = list(zip(command, command[1:], strict=False))
    assert ("--host", "127.0.0.1") in pairs and ("--port", "8123") in pairs
    joined = " ".join(command)
    assert "--conf models segdino" in joined
    assert "--conf sam2 false" in joined
    assert "--conf zoo_source github" in joined
    variables = server.server_environment(env, {"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"})
    assert variables["PATH"].split(":")[0] == str(env.resolve() / "bin")
    assert "PYTHONPATH" not in variables


def test_server_command_names_the_missing_env(tmp_path):
    with pytest.raises(FileNotFoundError, match="segdino label-env"):
        server.server_command(tmp_path / "nothing", tmp_path, tmp_path)


def test_cli_defaults():
    args = build_parser().parse_args(["label-server", "--studies", "s"])
    assert (args.host, args.port, args.env, args.backbone_weights) == ("127.0.0.1", 8000, ".venv-label", None)
    assert build_parser().parse_args(["label-env"]).path == ".venv-label"


def test_label_env_bad_input_exits_2_with_one_line(tmp_path, caplog):
    from segdino_monai.cli import main

    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    with caplog.at_level(logging.INFO):
        assert main(["label-env", "--path", str(afile)]) == 2
        assert main(["label-env", "--path", str(tmp_path / "env"), "--python", str(tmp_path / "no-python")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert str(afile) in errors[0] and "is a file" in errors[0]
    assert "--python" in errors[1] and str(tmp_path / "no-python") in errors[1]
    assert not (tmp_path / "env").exists() or not any((tmp_path / "env").iterdir())


def test_app_settings_defaults_sources_and_bad_values(tmp_path):
    from segdino_monai.apps.monailabel.settings import app_settings

    score = "segdino_monai.metrics.uncertainty:scalar_uncertainty"
    assert app_settings({}) == {"retrain_every": 0, "retrain_epochs": 5, "retrain_val_split": 0.2,
                                "uncertainty_score": score}  # fmt: skip
    # MONAI Label's --conf (strings) comes first, then --set (literals)
    overrides = {"retrain_every": 7, "retrain_epochs": 2, "uncertainty_score": "m:f"}
    settings = app_settings({"retrain_every": "3"}, overrides)
    assert settings == {"retrain_every": 3, "retrain_epochs": 2, "retrain_val_split": 0.2, "uncertainty_score": "m:f"}
    for bad in ({"retrain_every": -1}, {"retrain_every": "often"}, {"retrain_every": 1.5}, {"retrain_epochs": 0},
                {"retrain_val_split": 1.0}, {"retrain_every": True}, {"uncertainty_score": "module.only"},
                {"uncertainty_score": 3}):  # fmt: skip
        name = next(iter(bad))
        with pytest.raises(InputError, match=f"{name}=.*: {name} takes"):
            app_settings(bad)
    # segdino label-server checks them before the server starts
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    with pytest.raises(InputError, match="retrain_every='sometimes'"):
        server.prepare_app(tmp_path / "app", BUNDLE, str(weights), {"retrain_every": "sometimes"})
