"""Options that several ``segdino`` commands share, declared once, and the one reader of ``--set``.

The serving commands' shared steps are here too: the ``--task`` check and the ``torchrun`` process group.

Every command that takes ``--set`` reads it with :func:`set_overrides` and checks its ids with :func:`check_set_ids`
before any work: a typo'd id (``--set feature_cahce=true``) stops the command with one line and exit 2, as the
bundle commands (:func:`segdino_monai.workflows.runner.bundle_workflow`) do.
"""

from __future__ import annotations

import argparse
import ast
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segdino_monai.utils.options import MODALITIES

__all__ = [
    "BUNDLE_MODEL",
    "LABEL_MODEL",
    "MODALITIES",
    "MODEL_OPTIONS",
    "SERVING_MODEL",
    "add_derived_object_options",
    "add_host_option",
    "add_model_options",
    "add_progress_option",
    "add_set_option",
    "add_task_option",
    "check_set_ids",
    "check_task",
    "distributed_overrides",
    "literal",
    "load_predictor",
    "serving_overrides",
    "set_overrides",
]


#: the options that choose the model: flag -> add_argument keywords
MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "--bundle-root": {"help": "the bundle folder (default: ./bundle or .)"},
    "--modality": {"choices": list(MODALITIES), "help": "preprocessing preset"},
    "--backbone": {"help": "vits16, vits16plus, vitb16, vitl16 or vith16plus"},
    "--backbone-weights": {"help": "DINOv3 weights file (default: the bundle's), or 'random' (tests only)"},
    "--checkpoint": {"help": "decoder checkpoint (default: <bundle>/models/model.pt)"},
}
#: train, evaluate and infer: the bundle workflow builds the network from these
BUNDLE_MODEL = ("--bundle-root", "--modality", "--backbone", "--backbone-weights")
#: dicom, video, dicom-node and export: a trained bundle's network
SERVING_MODEL = ("--bundle-root", "--backbone-weights", "--checkpoint", "--modality")
#: label-server: the bundle copied into the app (its modality is a --set)
LABEL_MODEL = ("--bundle-root", "--backbone-weights")

SET_HELP = "any other bundle config override, repeatable"
TASK_HELP = "segment description: polyp, thyroid-nodule, breast-lesion, skin-lesion, lesion"


def add_model_options(parser: argparse.ArgumentParser, names: Sequence[str] = SERVING_MODEL) -> None:
    """The model options ``names`` (keys of :data:`MODEL_OPTIONS`), in that order."""
    for name in names:
        parser.add_argument(name, **MODEL_OPTIONS[name])


def add_set_option(parser: argparse.ArgumentParser, help: str = SET_HELP) -> None:  # noqa: A002 - argparse's name
    """``--set ID=VALUE``, repeatable; read by :func:`set_overrides`, checked by :func:`check_set_ids`."""
    parser.add_argument("--set", action="append", metavar="ID=VALUE", help=help)


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress bar (dicom, video)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_task_option(parser: argparse.ArgumentParser) -> None:
    """``--task``: the SEG's segment description (checked by :func:`check_task`)."""
    parser.add_argument("--task", help=TASK_HELP)


def add_host_option(parser: argparse.ArgumentParser) -> None:
    """``--host``: the address a server binds (dicom-node, label-server)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")


def add_derived_object_options(parser: argparse.ArgumentParser) -> None:
    """``--also-sc`` and ``--also-sr``: the DICOM objects written (and sent by the node) beside the SEG."""
    parser.add_argument(
        "--also-sc",
        action="store_true",
        help="also write a Secondary Capture overlay (sc.dcm; sc_NNNN.dcm per frame of a cine) for viewers that "
        "cannot show a SEG",
    )
    parser.add_argument(
        "--also-sr",
        action="store_true",
        help="also write a DICOM SR measurement report (sr.dcm, TID 1500): area (mm2) and maximum diameter (mm) of "
        "each segment, referencing the SEG and the source; none when the pixel size is unknown",
    )


def check_task(task: str | None) -> None:
    """Raise InputError for a ``--task`` that is not a known segment description."""
    from segdino_monai.dicom.seg import SEGMENT_TASKS
    from segdino_monai.utils.errors import InputError

    if task is not None and task not in SEGMENT_TASKS:
        raise InputError(f"--task {task}: unknown task; choose one of {', '.join(SEGMENT_TASKS)}")


def literal(value: str) -> object:
    """A ``--set`` value: a Python literal where it parses as one (``3``, ``[64, 64]``), else the text."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def set_overrides(items: Sequence[str] | None) -> dict[str, object]:
    """``--set ID=VALUE`` options as config overrides; values are Python literals where they parse as one.

    Booleans may be typed as people type them (``--set resume=false``): the configs read them with ``as_bool``.

    Raises:
        InputError: for an item without ``=`` or with an empty id.
    """
    from segdino_monai.utils.errors import InputError

    overrides: dict[str, object] = {}
    for item in items or []:
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise InputError(f"--set takes ID=VALUE (e.g. --set feature_cache=true), got {item!r}.")
        overrides[key.strip()] = literal(value)
    return overrides


def check_set_ids(
    overrides: Mapping[str, object],
    bundle_root: str | Path | None,
    modality: str | None = None,
    tasks: Iterable[str] = ("infer",),
    allowed: Iterable[str] = (),
) -> None:
    """Check ``--set`` ids against the bundle's merged configs, before any work or model load.

    The configs are those the bundle run of each task merges (``infer``: ``inference.json``, then the modality's
    ``configs/<modality>.json``); an id is accepted when the configs of any of ``tasks`` know it (see
    :func:`segdino_monai.workflows.runner.check_config_ids`). A bundle folder without those configs is left to the
    command, which reports it as it always has.

    Raises:
        InputError: for the first id that names nothing, with the closest known ids.
    """
    from monai.bundle import ConfigParser

    from segdino_monai.utils.errors import InputError
    from segdino_monai.workflows.configs import bundle_config_files, find_bundle_root
    from segdino_monai.workflows.runner import TASKS, check_config_ids

    if not overrides:
        return
    root = Path(bundle_root) if bundle_root else Path(find_bundle_root())
    if modality is None and isinstance(overrides.get("modality"), str):
        modality = str(overrides["modality"])  # --set modality=...: its config file is merged too
    meta = root / "configs" / "metadata.json"
    parsers = []
    for task in tasks:
        files = bundle_config_files(TASKS[task][0], modality, "default", root)
        if not all(path.is_file() for path in (*files, meta)):
            return
        parser = ConfigParser()
        parser.read_config([str(f) for f in files])
        parser.read_meta(str(meta))
        parsers.append(parser)
    for id_ in overrides:
        first: InputError | None = None
        for parser in parsers:
            try:
                check_config_ids(parser, [id_], "--set", allowed=allowed)
                break
            except InputError as err:
                first = first or err
        else:
            if first is not None:
                raise first


def serving_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The ``--set`` overrides of a serving command (dicom, video, dicom-node, export), their ids checked first."""
    overrides = set_overrides(args.set)
    check_set_ids(overrides, args.bundle_root, args.modality)  # a typo'd id stops the command before any work
    return overrides


def load_predictor(args: argparse.Namespace, overrides: Mapping[str, object]) -> Any:
    """The bundle's :class:`~segdino_monai.services.predictor.BundlePredictor` from the model options."""
    from segdino_monai.services.predictor import BundlePredictor

    return BundlePredictor(args.bundle_root, args.backbone_weights, args.checkpoint, args.modality, overrides)


def distributed_overrides() -> dict[str, str]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the process group; the config override of this process's GPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return {}
    import atexit

    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        atexit.register(dist.destroy_process_group)
    if not torch.cuda.is_available():
        return {}
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return {"device": f"$torch.device('cuda:{int(os.environ['LOCAL_RANK'])}')"}
