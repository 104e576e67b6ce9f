"""The ``segdino`` command: one entry point, one sub-command per task."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

logger = logging.getLogger("segdino_monai")


def _check_weights(args: argparse.Namespace) -> int:
    from segdino_monai.networks import DINOv3Backbone

    backbone = DINOv3Backbone(args.backbone, weights=args.weights)
    params = sum(p.numel() for p in backbone.model.parameters())
    logger.info(
        "%s loads into %s: %d parameters, embed_dim %d, taps %s",
        args.weights,
        backbone.arch,
        params,
        backbone.embed_dim,
        list(backbone.taps),
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="segdino", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-weights", help="check that a DINOv3 weights file loads exactly")
    check.add_argument("weights", help="Meta's .pth or timm's .pth/.safetensors DINOv3 weights file")
    check.add_argument("--backbone", default="vits16", help="vits16, vits16plus, vitb16, vitl16 or vith16plus")
    check.set_defaults(func=_check_weights)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``segdino`` command; returns the exit status (2 for bad input, with the reason logged)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as err:
        logger.error("%s", err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
