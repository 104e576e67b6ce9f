"""``segdino label-env`` and ``label-server``: MONAI Label on the bundle, in its own environment, offline."""

from __future__ import annotations

import argparse
import logging

from segdino_monai.cli.options import (
    LABEL_MODEL,
    add_host_option,
    add_model_options,
    add_set_option,
    check_set_ids,
    set_overrides,
)

__all__ = ["add_parser", "run"]

logger = logging.getLogger("segdino_monai")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the label-env and label-server sub-commands."""
    env = commands.add_parser(
        "label-env",
        help="create (or reuse) the MONAI Label environment",
        description="Create the MONAI Label environment (monailabel 0.8.5, monai 1.5.2, numpy<2, pydicom<3, this "
        "package without the dicom extra), or reuse it when its marker and versions match.",
    )
    env.add_argument("--path", default=".venv-label", help="the environment folder (default .venv-label)")
    env.add_argument("--python", help="the interpreter to create it with (default: this one's base Python)")
    env.add_argument("--force", action="store_true", help="reinstall even when the environment is complete")
    env.set_defaults(func=run)

    srv = commands.add_parser(
        "label-server",
        help="start the MONAI Label server on the bundle, offline",
        description="Serve the bundle as MONAI Label model `segdino` (infer and train) on a folder of 2D images "
        "(.jpg/.png; labels in <studies>/labels/final), or on the single-frame images of a DICOMweb server (final "
        "labels go back to it as DICOM SEG), offline. Stop it with Ctrl-C.",
    )
    srv.add_argument(
        "--studies",
        required=True,
        help="the image folder (MONAI Label's local datastore) or a DICOMweb URL (http://HOST:PORT/dicom-web)",
    )
    srv.add_argument(
        "--search-filter",
        metavar="JSON",
        help='with a DICOMweb URL: the QIDO-RS series filter (default {"Modality": "US,ES,XC,OT"}: ultrasound, '
        "endoscopy, dermoscopy photographs, secondary captures)",
    )
    srv.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    add_host_option(srv)
    add_model_options(srv, LABEL_MODEL)
    srv.add_argument("--env", default=".venv-label", help="the MONAI Label environment (default .venv-label)")
    srv.add_argument(
        "--app-dir",
        default=".segdino-label-app",
        help="working app folder; the served bundle copy (with the trained model.pt) is <app-dir>/model/segdino",
    )
    add_set_option(srv, help="a config override for the served bundle, or an app setting (retrain_every, ...)")
    srv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``args.command``: label-env or label-server."""
    return _label_env(args) if args.command == "label-env" else _label_server(args)


def _label_env(args: argparse.Namespace) -> int:
    from segdino_monai.apps.monailabel.environment import ensure_label_env

    try:
        ensure_label_env(args.path, python=args.python, force=args.force)
    except RuntimeError as err:  # pip failed (no registry, no disk space): the environment, not the input; logged
        logger.error("%s", err)
        return 1
    return 0


def _label_server(args: argparse.Namespace) -> int:
    from segdino_monai.apps.monailabel import server
    from segdino_monai.apps.monailabel.settings import DEFAULTS
    from segdino_monai.workflows.configs import find_bundle_root

    overrides = set_overrides(args.set)
    bundle_root = args.bundle_root or find_bundle_root()
    # the served bundle infers and trains: an id of either config is one; the app's own settings are ids too
    check_set_ids(overrides, bundle_root, tasks=("infer", "train"), allowed=DEFAULTS)
    server.start(
        args.studies,
        args.env,
        args.app_dir,
        bundle_root,
        backbone_weights=args.backbone_weights,
        overrides=overrides,
        host=args.host,
        port=args.port,
        search_filter=_search_filter(args.search_filter),
    )
    return 0


def _search_filter(value: str | None) -> dict[str, object] | None:
    import json

    from segdino_monai.utils.errors import InputError

    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict) or not parsed:
        example = json.dumps({"Modality": "US"})
        raise InputError(f"--search-filter {value!r}: give a JSON object of QIDO-RS keys, e.g. '{example}'")
    return parsed
