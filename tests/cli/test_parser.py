"""The parser tree: the options several commands share are declared once, in ``segdino_monai/cli/options.py``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

import segdino_monai.cli
from segdino_monai.cli import COMMAND_MODULES, build_parser
from segdino_monai.cli.options import BUNDLE_MODEL, LABEL_MODEL, MODEL_OPTIONS, SERVING_MODEL

CLI = Path(segdino_monai.cli.__file__).parent
#: options of more than one command: one declaration each
SHARED = [*MODEL_OPTIONS, "--set", "--no-progress", "--also-sc", "--also-sr", "--task", "--host"]


def _commands() -> dict[str, argparse.ArgumentParser]:
    return next(a for a in build_parser()._actions if a.dest == "command").choices


def _declaration(action: argparse.Action) -> tuple:
    choices = tuple(sorted(action.choices)) if action.choices else None
    return (type(action), action.dest, action.nargs, action.type, action.metavar, choices, action.required)


def test_each_command_module_adds_its_commands_and_runs_them():
    for module in COMMAND_MODULES:
        assert callable(module.add_parser) and callable(module.run), module.__name__
    for name, parser in _commands().items():
        func = parser.get_default("func")
        assert func.__name__ == "run" and func.__module__.startswith("segdino_monai.cli."), name


@pytest.mark.parametrize("flag", SHARED)
def test_a_shared_option_is_declared_once_in_the_source(flag):
    sources = {path.name: path.read_text() for path in CLI.glob("*.py")}
    quoted = rf"[\"']{re.escape(flag)}[\"']"
    declared = rf"add_argument\(\s*{quoted}|{quoted}:\s*\{{"  # add_argument("--x", ...) or MODEL_OPTIONS' "--x": {...}
    found = {name: len(re.findall(declared, text)) for name, text in sources.items()}
    found = {name: count for name, count in found.items() if count}
    # make-demo-data's --modality (data.py) is what to generate, not the model's preprocessing preset
    assert found == {"options.py": 1, **({"data.py": 1} if flag == "--modality" else {})}, found


@pytest.mark.parametrize("flag", SHARED)
def test_a_shared_option_is_the_same_in_every_command(flag):
    commands = _commands()
    if flag == "--modality":  # make-demo-data's --modality is what to generate, not the model's preset
        commands.pop("make-demo-data")
    found = {name: a for name, sub in commands.items() for a in sub._actions if flag in a.option_strings}
    assert len(found) >= 2, f"{flag} is used by {sorted(found)} only"
    assert len({_declaration(a) for a in found.values()}) == 1, {n: _declaration(a) for n, a in found.items()}
    if flag != "--set":  # label-server's --set says what it also takes (the app's settings)
        assert len({a.help for a in found.values()}) == 1, {n: a.help for n, a in found.items()}


@pytest.mark.parametrize(
    ("names", "model"),
    [
        (["train", "evaluate", "infer"], BUNDLE_MODEL),
        (["dicom", "video", "dicom-node", "export"], SERVING_MODEL),
        (["label-server"], LABEL_MODEL),
    ],
)
def test_commands_of_a_family_get_the_same_model_options(names, model):
    commands = _commands()
    for name in names:
        flags = {f for a in commands[name]._actions for f in a.option_strings}
        assert set(model) <= flags and not (set(MODEL_OPTIONS) - set(model)) & flags, name
