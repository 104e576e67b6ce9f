"""``segdino dicom-node``: a Storage SCP that segments what it receives and sends the SEGs on."""

from __future__ import annotations

import argparse
import logging

from segdino_monai.cli.options import (
    add_derived_object_options,
    add_host_option,
    add_model_options,
    add_set_option,
    add_task_option,
    check_task,
    load_predictor,
    serving_overrides,
)

__all__ = ["add_parser", "run"]

logger = logging.getLogger("segdino_monai")


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the dicom-node sub-command."""
    node = commands.add_parser(
        "dicom-node",
        help="a DICOM node: receive images by C-STORE, segment them, send each DICOM SEG to the PACS",
        description="Listen for C-STORE (and C-ECHO) as a Storage SCP; store every received image instance in "
        "STORE_DIR (synced before the success status), segment it in the background with the bundle's inference "
        "and send its DICOM SEG (and with --also-sc/--also-sr its overlay and SR) to --forward by C-STORE, "
        "retrying with back-off. Restartable: after a crash or "
        "SIGKILL, start it again to finish the journaled work. Stop it with Ctrl-C or SIGTERM.",
    )
    node.add_argument("--aet", default="SEGDINO", help="this node's AE title (default SEGDINO)")
    node.add_argument("--port", type=int, default=11112, help="port to listen on (default 11112)")
    add_host_option(node)
    node.add_argument("--forward", required=True, metavar="AET@HOST:PORT", help="where SEGs go, e.g. the PACS")
    node.add_argument("--store-dir", default="segdino-node", help="received images, journal, results")
    node.add_argument("--allowed-aets", metavar="A,B", help="calling AE titles accepted (default: any)")
    node.add_argument("--send-attempts", type=int, default=5, help="refusals of one SEG before it is marked failed")
    node.add_argument("--max-backoff", type=float, default=60.0, help="longest delay between send retries (s)")
    add_model_options(node)
    add_task_option(node)
    add_derived_object_options(node)
    add_set_option(node)
    node.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the DICOM node until Ctrl-C or SIGTERM; options are checked before the model loads."""
    from segdino_monai.dicom.seg import DEFAULT_TASK, SegOptions
    from segdino_monai.services.node import DicomNode, serve
    from segdino_monai.services.sender import Destination

    overrides = serving_overrides(args)
    forward = Destination.parse(args.forward)  # bad options stop the command before the model loads
    check_task(args.task)
    allowed = [aet.strip() for aet in (args.allowed_aets or "").split(",") if aet.strip()]
    logging.getLogger("highdicom").setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    segmenter = load_predictor(args, overrides)
    options = SegOptions(
        task=args.task or DEFAULT_TASK.get(segmenter.modality, "lesion"), also_sc=args.also_sc, also_sr=args.also_sr
    )
    node = DicomNode(
        segmenter,
        args.store_dir,
        forward,
        args.aet,
        args.host,
        args.port,
        allowed,
        options,
        send_attempts=args.send_attempts,
        max_backoff=args.max_backoff,
    )
    serve(node)
    return 0
