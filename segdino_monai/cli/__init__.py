"""The ``segdino`` command: one entry point, one sub-command per task."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from segdino_monai.cli import bench, bundle, data, dicom, export, label, node, report, video
from segdino_monai.utils.errors import finish_worker_threads, input_error_message, interrupted

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

logger = logging.getLogger("segdino_monai")

#: the modules that add the sub-commands, in the order ``segdino --help`` lists them
COMMAND_MODULES = (data, bench, export, bundle, report, dicom, video, node, label)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="segdino", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``segdino`` command; returns the exit status (2 for bad input with the reason logged, 130 on Ctrl-C)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        logger.error("Interrupted.")
        finish_worker_threads()
        return 130
    except Exception as err:  # bad input is one line and exit 2; anything else is a bug and keeps its traceback
        if interrupted(err):  # Ctrl-C that a clean-up turned into another error (torch.save's zip writer)
            logger.error("Interrupted.")
            finish_worker_threads()
            return 130
        message = input_error_message(err)
        if message is None:
            raise
        logger.error("%s", message)
        finish_worker_threads()
        return 2
