"""Run the bundle's workflows (train, evaluate, infer) from plain options, as ``python -m monai.bundle run`` would.

Config overrides are checked against the configs before anything runs: an id that names nothing (a typo such as
``feature_cahce``) would otherwise be added to the config silently and ignored. :func:`bundle_workflow` checks the
overrides it is given (the ``segdino`` command's options and ``--set``); ``python -m monai.bundle run`` hands its
overrides to MONAI only, so the bundle configs call :func:`check_command_line_ids` first in ``initialize``, which
reads them back from ``sys.argv`` (see there).
"""

from __future__ import annotations

import ast
import difflib
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser, ConfigWorkflow
from monai.bundle.reference_resolver import ReferenceResolver
from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS, ID_SEP_KEY

from segdino_monai.utils.errors import InputError
from segdino_monai.workflows.configs import bundle_config_files, find_bundle_root

__all__ = [
    "BUNDLE_RUN_ARGS",
    "PRESETS",
    "TASKS",
    "bundle_workflow",
    "check_command_line_ids",
    "check_config_ids",
    "run_bundle",
    "tracking_ids",
]

logger = logging.getLogger(__name__)

# task -> (config files, workflow type, run id)
TASKS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "train": (("train.json",), "train", "training"),
    "evaluate": (("train.json", "evaluate.json"), "train", "evaluating"),
    "infer": (("inference.json",), "infer", "inference"),
}
# preset -> config files merged after the task's own; presets other than "default" apply to train and evaluate
PRESETS: dict[str, tuple[str, ...]] = {"default": (), "paper": ("paper.json",)}


def bundle_workflow(
    task: str,
    bundle_root: str | Path | None = None,
    *,
    preset: str = "default",
    tracking: str | None = None,
    **overrides: Any,
) -> ConfigWorkflow:
    """Build (not yet initialise) the bundle workflow of a task with config overrides.

    Args:
        task: ``train``, ``evaluate`` or ``infer``.
        bundle_root: the bundle folder; default: found from the working directory.
        preset: ``default``, or ``paper`` (train and evaluate): ``configs/paper.json`` merged last, the SegDINO
            paper's protocol.
        tracking: MONAI's experiment tracking: ``mlflow``, or a tracking settings file (``--tracking`` of
            ``python -m monai.bundle run``); its settings' ids (``tracking_uri``, ``experiment_name``, ...) are then
            valid overrides.
        overrides: config ids and values, e.g. ``dataset_dir="/data/kvasir"``, ``**{"train#trainer#max_epochs": 5}``;
            ``None`` values are left out. They apply after every config file, the preset's included. ``modality``
            is not an override but the modality's config file (``configs/<modality>.json``), merged after the
            task's configs and before the preset's.

    Raises:
        InputError: for an unknown task or preset, a preset the task has no use for, a bundle folder without the
            task's configs, or an override id that names nothing in them (see :func:`check_config_ids`).
    """
    if task not in TASKS:
        raise InputError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if preset not in PRESETS:
        raise InputError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    if PRESETS[preset] and task not in ("train", "evaluate"):
        raise InputError(f"the {preset!r} preset applies to train and evaluate, not to {task}")
    root = Path(bundle_root) if bundle_root else Path(find_bundle_root())
    files, workflow_type, run_id = TASKS[task]
    configs = root / "configs"
    modality = overrides.pop("modality", None)
    config_files = bundle_config_files(files, modality, "paper" if PRESETS[preset] else "default", root)
    for path in (*config_files, configs / "metadata.json"):
        if not path.is_file():
            raise InputError(
                f"Bundle config {path} not found: {root} is not a bundle folder. Pass --bundle-root <the bundle "
                "folder, the one with configs/metadata.json>, or run from the repository."
            )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    check_config_ids(
        _read_configs(config_files, configs / "metadata.json"), overrides, "--set", allowed=tracking_ids(tracking)
    )
    return ConfigWorkflow(
        config_file=[str(f) for f in config_files],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        run_id=run_id,
        bundle_root=str(root),
        tracking=tracking,
        **overrides,
    )


def run_bundle(
    task: str,
    bundle_root: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    preset: str = "default",
    tracking: str | None = None,
) -> int:
    """Initialise, run and finalise a bundle workflow (see :func:`bundle_workflow`).

    Returns:
        The exit status: 0, or 1 when the run finished but skipped some inputs (logged, see
        :class:`~segdino_monai.workflows.inference.ImagesSkipped`).
    """
    from segdino_monai.workflows.inference import ImagesSkipped

    workflow = bundle_workflow(task, bundle_root, preset=preset, tracking=tracking, **dict(overrides or {}))
    workflow.initialize()
    try:
        workflow.run()
    except ImagesSkipped:
        workflow.finalize()
        return 1
    workflow.finalize()
    return 0


#: Arguments of ``python -m monai.bundle run`` (and of the workflow it creates) that are not config ids.
BUNDLE_RUN_ARGS = frozenset(
    {
        "run_id",
        "init_id",
        "final_id",
        "meta_file",
        "config_file",
        "logging_file",
        "tracking",
        "args_file",
        "workflow_name",
        "workflow_type",
        "properties_path",
    }
)


def _read_configs(config_files: Sequence[str | Path], meta_file: str | Path | Sequence[str] | None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(f) for f in config_files])
    if meta_file:
        parser.read_meta(meta_file)
    return parser


def check_config_ids(
    parser: ConfigParser, ids: Iterable[str], option: str = "--set", allowed: Iterable[str] = ()
) -> None:
    """Raise :class:`InputError` for the first override id that names nothing in the config.

    An id is known when the config has it. A nested id may also add a key to a dictionary the config has
    (``network_def#backbone_kwargs``: a new argument of a component); its parent must exist. A top-level id that
    the config lacks is a mistake (``feature_cahce``), reported with the closest known ids.

    Args:
        parser: the merged configs, without the overrides.
        ids: the override ids, e.g. ``["feature_cache", "train#trainer#max_epochs"]``.
        option: how the user gave them, for the message (``--set`` or ``--``).
        allowed: ids accepted without being in the config (MONAI's tracking settings).
    """
    allowed = set(allowed)
    for id_ in ids:
        id_ = str(id_)
        if id_ in allowed or id_.startswith("_meta_") or id_ in parser:
            continue
        parts = ReferenceResolver.normalize_id(id_).split(ID_SEP_KEY)
        for depth in range(1, len(parts) + 1):
            if ID_SEP_KEY.join(parts[:depth]) in parser:
                continue
            parent = parser[ID_SEP_KEY.join(parts[: depth - 1])] if depth > 1 else parser.config
            if depth == len(parts) and depth > 1 and isinstance(parent, dict):
                break  # a new key of an existing dictionary
            unknown = "#".join(parts[:depth])
            names = [str(k) for k in parent] if isinstance(parent, dict) else []
            names = ["#".join([*parts[: depth - 1], n]) for n in names if not n.startswith("_")]
            close = difflib.get_close_matches(unknown, names, n=3, cutoff=0.6)
            suggestion = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "."
            shown = f"--set {id_}=..." if option == "--set" else f"--{id_}"
            raise InputError(
                f"Unknown config id {unknown!r} (in {shown}): the bundle's configs have no such option{suggestion} "
                "Check the spelling; ids are the keys of bundle/configs/*.json, nested ones joined by '#'."
            )


def _started_as_bundle_run(argv: Sequence[str]) -> bool:
    """Whether this process is ``python -m monai.bundle run ...`` (also under ``torchrun -m monai.bundle``)."""
    if len(argv) < 2 or argv[1] != "run":
        return False
    parts = Path(os.path.abspath(argv[0])).parts
    return parts[-3:] == ("monai", "bundle", "__main__.py")


def _fire_value(text: str) -> Any:
    """A command-line value as Python's ``fire`` (MONAI's command line) reads it: a literal if it is one."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _fire_options(args: Sequence[str]) -> dict[str, Any]:
    """``--name value``, ``--name=value`` and bare ``--flag`` options of a ``fire`` command line, by name."""
    options: dict[str, Any] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            break
        if not arg.startswith("--") or len(arg) == 2:
            continue
        name, has_value, value = arg[2:].partition("=")
        if not has_value:
            if index < len(args) and not args[index].startswith("--"):
                value, index = args[index], index + 1
            else:
                value = "True"
        options[name.replace("-", "_")] = _fire_value(value)
    return options


def check_command_line_ids(argv: Sequence[str] | None = None) -> None:
    """Check the overrides of ``python -m monai.bundle run`` against the bundle configs; ignore other processes.

    MONAI adds an override whose id the config lacks as a new, unused key, so ``--feature_cahce true`` would run
    without the feature cache and without a word. The bundle's configs call this first in ``initialize``. MONAI
    gives a config no access to its command line, so this reads ``sys.argv`` back when the process was started as
    ``python -m monai.bundle run`` (``argv[0]`` is ``monai/bundle/__main__.py``, also under ``torchrun``): the
    options other than MONAI's own arguments (:data:`BUNDLE_RUN_ARGS`) are the overrides, read as ``fire`` reads
    them, and ``--args_file`` adds its keys. The configs are read again (``--config_file``, ``--meta_file``) and
    checked with :func:`check_config_ids`. Called in another process (the ``segdino`` command, MONAI Label's
    in-process training, a test), it does nothing: those pass their overrides through :func:`bundle_workflow`.

    Args:
        argv: the command line (default ``sys.argv``).

    Raises:
        InputError: naming the unknown id and the closest known ones.
    """
    argv = list(sys.argv if argv is None else argv)
    if not _started_as_bundle_run(argv):
        return
    options = _fire_options(argv[2:])
    if "args_file" in options:
        from_file = ConfigParser.load_config_file(str(options["args_file"]))
        options = {**{str(k): v for k, v in from_file.items()}, **options}
    config_file = options.get("config_file")
    if not config_file:
        return  # MONAI itself reports a run without configs
    files = [config_file] if isinstance(config_file, (str, Path)) else list(config_file)
    parser = _read_configs(files, options.get("meta_file"))
    ids = [name for name in options if name not in BUNDLE_RUN_ARGS]
    check_config_ids(parser, ids, option="--", allowed=tracking_ids(options.get("tracking")))


def tracking_ids(tracking: str | None) -> set[str]:
    """The config ids MONAI's experiment tracking adds (``--tracking``): valid overrides though no config has them.

    Args:
        tracking: ``mlflow`` (MONAI's settings), a tracking settings file, or ``None`` (no tracking: no ids).
    """
    if not tracking:
        return set()
    if tracking in DEFAULT_EXP_MGMT_SETTINGS:
        settings = DEFAULT_EXP_MGMT_SETTINGS[tracking]
    else:
        settings = ConfigParser.load_config_files(tracking)
    return set(settings.get("configs", {})) | {"tracking_uri", "experiment_name", "run_name"}
